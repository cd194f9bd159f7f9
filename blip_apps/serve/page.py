"""The web page served at ``/``: pick or drop an image, see its caption, ask a question about it
and see the answer.  Plain HTML and a little JavaScript calling ``/caption`` and ``/vqa`` of the
same server (relative URLs); the tasks the server lacks are hidden after ``/health``."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>BLIP</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  #drop { border: 2px dashed #888; border-radius: 8px; padding: 1.5rem; text-align: center; }
  #drop.over { background: #eef; }
  #preview { width: 12rem; max-width: 100%; height: auto; display: none; margin: 1rem auto; image-rendering: pixelated; }
  .out { font-size: 1.2rem; margin: .5rem 0; min-height: 1.5rem; }
  .err { color: #b00; }
  .score { color: #666; font-size: .9rem; }
  form { margin-top: 1rem; }
  input[type=text] { width: 70%; }
</style>
</head>
<body>
<h1>BLIP</h1>
<div id="drop">
  <p>Drop an image here, or <label>pick one: <input id="file" type="file" accept="image/*"></label></p>
  <img id="preview" alt="the chosen image">
</div>
<section id="caption-section">
  <h2>Caption</h2>
  <div id="caption" class="out"></div>
  <div id="caption-score" class="score"></div>
</section>
<section id="vqa-section">
  <h2>Ask a question</h2>
  <form id="ask">
    <input id="question" type="text" placeholder="what color is the circle?">
    <button id="ask-button" type="submit">Ask</button>
  </form>
  <div id="answer" class="out"></div>
  <div id="answer-score" class="score"></div>
</section>
<script>
let image = null;
const $ = (id) => document.getElementById(id);

function show(id, text, isError) {
  $(id).textContent = text;
  $(id).className = isError ? "out err" : "out";
}

async function post(path, fields) {
  const body = new FormData();
  for (const [name, value] of Object.entries(fields)) body.append(name, value);
  const response = await fetch(path, { method: "POST", body });
  let data;
  try { data = await response.json(); } catch (e) { data = { error: response.statusText }; }
  if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
  return data;
}

async function caption() {
  if (!image || $("caption-section").hidden) return;
  show("caption", "captioning\\u2026");
  $("caption-score").textContent = "";
  try {
    const data = await post("caption", { image });
    show("caption", data.caption);
    $("caption-score").textContent = "mean token log-probability " + data.score.toFixed(3);
  } catch (e) { show("caption", e.message, true); }
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!image) { show("answer", "choose an image first", true); return; }
  if (!question) { show("answer", "type a question", true); return; }
  show("answer", "thinking\\u2026");
  $("answer-score").textContent = "";
  try {
    const data = await post("vqa", { image, question });
    show("answer", data.answer);
    $("answer-score").textContent = "mean token log-probability " + data.score.toFixed(3);
  } catch (e) { show("answer", e.message, true); }
}

function choose(file) {
  if (!file) return;
  image = file;
  $("preview").src = URL.createObjectURL(file);
  $("preview").style.display = "block";
  show("answer", "");
  $("answer-score").textContent = "";
  caption();
}

$("file").addEventListener("change", (e) => choose(e.target.files[0]));
$("ask").addEventListener("submit", ask);
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  choose(e.dataTransfer.files[0]);
});
fetch("health").then((r) => r.json()).then((h) => {
  $("caption-section").hidden = !h.tasks.includes("caption");
  $("vqa-section").hidden = !h.tasks.includes("vqa");
}).catch(() => {});
</script>
</body>
</html>
"""

__all__ = ["PAGE"]
