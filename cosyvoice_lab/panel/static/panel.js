// The listening panel's page: ask for the rater's session, show each item with a player and
// five rating buttons, send each rating as it is given. Text is set with textContent only.
(function () {
  "use strict";
  var token = new URLSearchParams(window.location.search).get("token");
  var form = document.getElementById("join");
  var nameInput = document.getElementById("rater");
  var statusBox = document.getElementById("status");
  var progressBox = document.getElementById("progress");
  var list = document.getElementById("items");
  var done = document.getElementById("done");
  var session = null;
  var total = 0;
  var rated = 0;

  function withToken(path) {
    if (!token) return path;
    return path + (path.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(token);
  }

  function say(text, isError) {
    statusBox.textContent = text;
    statusBox.className = isError ? "error" : "";
  }

  function showProgress() {
    progressBox.textContent = rated + " of " + total + " rated";
    done.hidden = !(total > 0 && rated === total);
  }

  function answer(response) {
    return response.json().then(function (body) {
      if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
      return body;
    }, function () { throw new Error("HTTP " + response.status); });
  }

  function rate(item, value, li, buttons, note) {
    // One rating of an item in flight at a time: the buttons wait for the answer, so a double
    // click cannot send two and the page always shows what the log keeps.
    buttons.forEach(function (b) { b.disabled = true; });
    note.textContent = "saving…";
    note.className = "saved";
    fetch(withToken("/api/rating"), {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({session: session, item: item.id, rating: value})
    }).then(answer).then(function (body) {
      buttons.forEach(function (b, i) { b.setAttribute("aria-pressed", String(i + 1 === body.rating)); });
      li.classList.add("rated");
      li.dataset.rating = String(body.rating);
      note.textContent = "saved";
      rated = body.rated;
      total = body.total;
      showProgress();
    }).catch(function (err) {
      note.textContent = "not saved: " + err.message + " (try again)";
      note.className = "saved error";
    }).then(function () {
      buttons.forEach(function (b) { b.disabled = false; });
    });
  }

  function itemElement(item) {
    var li = document.createElement("li");
    li.className = "item";
    li.dataset.item = item.id;
    var label = document.createElement("div");
    label.className = "label";
    label.textContent = "Voice " + item.label;
    li.appendChild(label);
    if (typeof item.description === "string") {
      var description = document.createElement("p");
      description.className = "description";
      description.textContent = item.description;
      li.appendChild(description);
    }
    var audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "metadata";
    audio.src = item.audio_url;
    li.appendChild(audio);
    var stars = document.createElement("div");
    stars.className = "stars";
    var note = document.createElement("span");
    var buttons = [];
    for (var value = 1; value <= 5; value++) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = String(value);
      button.dataset.rating = String(value);
      button.setAttribute("aria-label", "rate voice " + item.label + ": " + value + " of 5");
      button.setAttribute("aria-pressed", String(item.rating === value));
      button.addEventListener("click", rate.bind(null, item, value, li, buttons, note));
      buttons.push(button);
      stars.appendChild(button);
    }
    note.className = "saved";
    if (item.rating) {
      li.classList.add("rated");
      li.dataset.rating = String(item.rating);
      note.textContent = "saved";
    }
    stars.appendChild(note);
    li.appendChild(stars);
    return li;
  }

  function start(name) {
    say("loading…", false);
    fetch(withToken("/api/session?rater=" + encodeURIComponent(name))).then(answer).then(function (body) {
      session = body.session;
      try { window.localStorage.setItem("cosyvoice-panel-rater", name); } catch (e) { /* private mode */ }
      list.textContent = "";
      body.items.forEach(function (item) { list.appendChild(itemElement(item)); });
      total = body.items.length;
      rated = body.items.filter(function (item) { return item.rating; }).length;
      form.hidden = true;
      say("Rating as " + body.rater + ".", false);
      showProgress();
    }).catch(function (err) { say(err.message, true); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var name = nameInput.value.trim();
    if (name) start(name);
  });
  try {
    var saved = window.localStorage.getItem("cosyvoice-panel-rater");
    if (saved) nameInput.value = saved;
  } catch (e) { /* storage refused: the rater types the name */ }
})();
