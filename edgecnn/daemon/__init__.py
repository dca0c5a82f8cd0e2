"""The camera classifier daemon behind `edgecnn serve` (device side: never imports TensorFlow).

Modules: `sources` (cameras, files, streams), `pipeline` (capture apart from
inference, latest frame only), `model` (hot-reloadable runner), `overlay`,
`http` (routes, on aiohttp) with `httpcore` (connection limits) and `uploads`
(bounded decoding), `metrics`, `mqtt`, `backoff` (capped, jittered), `redact`
(secrets out of everything shown), `nativelog` (FFmpeg's stderr into logging),
`jsonlog`, `systemd` (sd_notify), `config` and `service` (ties the parts
together and owns the lifecycle).
"""
