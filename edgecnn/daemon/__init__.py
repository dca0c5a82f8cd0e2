"""The camera classifier daemon behind `edgecnn serve` (device side: never imports TensorFlow).

Modules: `sources` (cameras, files, streams), `pipeline` (capture apart from
inference, latest frame only), `model` (hot-reloadable runner), `overlay`,
`http`, `metrics`, `mqtt`, `jsonlog`, `systemd` (sd_notify), `config` and
`service` (ties the parts together and owns the lifecycle).
"""
