"""The label page: a grid of captures, the model's guess and score, a button and a key per class."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgecnn label</title>
<style>
 body{font-family:system-ui,sans-serif;background:#111;color:#eee;margin:0;padding:1rem}
 header{display:flex;gap:1rem;align-items:center;flex-wrap:wrap;margin-bottom:.8rem}
 #grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px}
 .card{background:#222;border:2px solid #333;border-radius:6px;padding:6px}
 .card.sel{border-color:#4caf50}
 .card img{width:100%;aspect-ratio:1;object-fit:contain;image-rendering:pixelated;background:#000}
 .guess{font-size:13px;margin:4px 0}
 .low{color:#e0b040}
 .btns{display:flex;flex-wrap:wrap;gap:3px}
 button{background:#333;color:#eee;border:1px solid #555;border-radius:3px;font-size:12px;padding:2px 6px;cursor:pointer}
 button:hover{background:#4caf50}
 button.discard{background:#522}
 kbd{font-size:10px;color:#9c9}
 #err{color:#f66}
</style></head>
<body>
<header>
 <b>edgecnn label</b>
 <span><b id="pending">0</b> to label &middot; <b id="labelled">0</b> labelled &middot; <b id="discarded">0</b> discarded</span>
 <button id="undo" title="z">undo <kbd>z</kbd></button>
 <span id="last"></span>
 <span id="err"></span>
</header>
<div id="help">Keys label the highlighted capture: <span id="keys"></span>; <kbd>x</kbd> unknown / discard,
 <kbd>z</kbd> undo, arrows move. Each answer is saved at once.</div>
<p></p>
<div id="grid"></div>
<script>
let state = null, sel = 0;
const $ = (id) => document.getElementById(id);
async function call(method, path, body) {
  const r = await fetch(path, {method, cache: "no-store",
    headers: {"Content-Type": "application/json", "X-Edgecnn-Label": "1"},
    body: body === undefined ? undefined : JSON.stringify(body)});
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || r.status);
  return j;
}
function card(item, i) {
  const c = document.createElement("div");
  c.className = "card";
  c.dataset.id = item.id;
  const img = document.createElement("img");
  img.src = "image?id=" + encodeURIComponent(item.id);
  img.alt = item.id;
  const g = document.createElement("div");
  g.className = "guess" + (item.score < 0.5 ? " low" : "");
  g.textContent = "model: " + item.guess + " " + (item.score ?? 0).toFixed(2) + " (" + item.reasons.join(", ") + ")";
  g.title = item.top_k.map(t => t.label + " " + t.score.toFixed(2)).join(", ");
  const b = document.createElement("div");
  b.className = "btns";
  for (const cl of state.classes) {
    const x = document.createElement("button");
    x.className = "cls"; x.dataset.class = cl.name;
    x.append(cl.name + " ");
    if (cl.key && cl.key !== cl.name) {
      const k = document.createElement("kbd"); k.textContent = cl.key; x.append(k);
    }
    x.onclick = (e) => { e.stopPropagation(); answer(item.id, cl.name); };
    b.append(x);
  }
  const d = document.createElement("button");
  d.className = "discard"; d.textContent = "unknown";
  d.onclick = (e) => { e.stopPropagation(); answer(item.id, null); };
  b.append(d);
  c.append(img, g, b);
  return c;
}
function render() {
  $("pending").textContent = state.pending;
  $("labelled").textContent = state.labelled;
  $("discarded").textContent = state.discarded;
  $("undo").disabled = state.undo === 0;
  $("last").textContent = state.last ? "last: " + (state.last.label ?? "discarded") : "";
  $("keys").textContent = state.classes.filter(c => c.key)
    .map(c => c.key === c.name ? c.key : c.key + " " + c.name).join(", ");
  sel = Math.max(0, Math.min(sel, state.items.length - 1));
  // Keep the cards that stay (no image is decoded twice), add the new ones in order.
  const grid = $("grid"), have = new Map([...grid.children].map(c => [c.dataset.id, c]));
  const want = state.items.map((item, i) => have.get(item.id) || card(item, i));
  have.forEach((c, id) => { if (!want.includes(c)) c.remove(); });
  want.forEach((c, i) => { if (grid.children[i] !== c) grid.insertBefore(c, grid.children[i] || null); });
  mark();
  document.body.dataset.ready = "1";
}
function mark() {
  [...$("grid").children].forEach((c, i) => { c.classList.toggle("sel", i === sel); c.onclick = () => { sel = i; mark(); }; });
}
async function run(p) {
  document.body.dataset.ready = "0";
  try { state = await p; $("err").textContent = ""; }
  catch (e) { $("err").textContent = String(e.message || e); state = await call("GET", "api/state"); }
  render();
}
function answer(id, label) { run(call("POST", "api/label", {id, label})); }
function undo() { run(call("POST", "api/undo", {})); }
$("undo").onclick = undo;
document.addEventListener("keydown", (e) => {
  if (!state || e.ctrlKey && e.key !== "z" || e.altKey || e.metaKey) return;
  const k = e.key.toLowerCase();
  const item = state.items[sel];
  if (k === "z" || e.key === "Backspace") { e.preventDefault(); undo(); return; }
  if (k === "arrowright" || k === "arrowdown") { sel = Math.min(sel + 1, state.items.length - 1); mark(); return; }
  if (k === "arrowleft" || k === "arrowup") { sel = Math.max(sel - 1, 0); mark(); return; }
  if (!item) return;
  if (k === "x" || e.key === "Delete") { answer(item.id, null); return; }
  const cl = state.classes.find(c => c.key === k);
  if (cl) answer(item.id, cl.name);
});
run(call("GET", "api/state"));
</script></body></html>
"""
