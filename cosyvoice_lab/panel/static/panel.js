// The listening panel's page: ask for the rater's session (by the personal link's invite, or by
// name where the panel allows open enrolment), show each item with its player(s) and answer
// buttons, send each answer as it is given. Text is set with textContent only.
(function () {
  "use strict";
  var query = new URLSearchParams(window.location.search);
  var token = query.get("token");
  var invite = query.get("invite");
  var form = document.getElementById("join");
  var nameInput = document.getElementById("rater");
  var statusBox = document.getElementById("status");
  var progressBox = document.getElementById("progress");
  var list = document.getElementById("items");
  var done = document.getElementById("done");
  var thanks = document.getElementById("thanks");
  var thanksCount = document.getElementById("thanks-count");
  var session = null;
  var joinedAs = null;
  var kind = document.body.dataset.kind;
  var settings = {};
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
    progressBox.textContent = rated + " of " + total + (kind === "pair" ? " answered" : " rated");
    var finished = total > 0 && rated === total;
    done.hidden = !finished || settings.thank_you;
    thanks.hidden = !(finished && settings.thank_you);
    if (finished && settings.thank_you) {
      thanksCount.textContent = "You answered " + rated + " item" + (rated === 1 ? "" : "s") +
        ". Your answers are saved; you can close this page.";
    }
  }

  function answer(response) {
    return response.json().then(function (body) {
      if (!response.ok) {
        var err = new Error(body.error || "HTTP " + response.status);
        err.status = response.status;
        throw err;
      }
      return body;
    }, function () { throw new Error("HTTP " + response.status); });
  }

  function send(path, body, li, buttons, note, onSaved) {
    // One answer of an item in flight at a time: the buttons wait for the answer, so a double
    // click cannot send two and the page always shows what the log keeps.
    buttons.forEach(function (b) { b.disabled = true; });
    note.textContent = "saving…";
    note.className = "saved";
    fetch(withToken(path), {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body)
    }).then(answer).then(function (saved) {
      onSaved(saved);
      li.classList.add("rated");
      note.textContent = "saved";
      rated = saved.rated;
      total = saved.total;
      showProgress();
    }).catch(function (err) {
      if (err.status === 404 && err.message === "no such session") {
        note.textContent = "the panel restarted: reloading your round…";
        window.setTimeout(rejoin, 500);
        return;
      }
      note.textContent = "not saved: " + err.message + " (try again)";
      note.className = "saved error";
    }).then(function () {
      buttons.forEach(function (b) { b.disabled = b.dataset.locked === "true"; });
    });
  }

  function lockUntilPlayed(players, buttons, wait) {
    // must_play: the answer buttons open once every player of the item played to its end.
    if (!settings.must_play) return;
    var left = players.length;
    buttons.forEach(function (b) { b.disabled = true; b.dataset.locked = "true"; });
    wait.textContent = players.length > 1 ? "Play both voices to the end to answer." : "Play it to the end to rate.";
    players.forEach(function (audio) {
      var counted = false;
      audio.addEventListener("ended", function () {
        if (counted) return;
        counted = true;
        left -= 1;
        if (left === 0) {
          buttons.forEach(function (b) { b.disabled = false; b.dataset.locked = "false"; });
          wait.textContent = "";
        }
      });
    });
  }

  function player(url) {
    var audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "metadata";
    audio.src = url;
    return audio;
  }

  function starItem(item, li, note, wait) {
    var audio = player(item.audio_url);
    li.appendChild(audio);
    var stars = document.createElement("div");
    stars.className = "stars";
    var buttons = [];
    for (var value = 1; value <= 5; value++) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = String(value);
      button.dataset.rating = String(value);
      button.setAttribute("aria-label", "rate voice " + item.label + ": " + value + " of 5");
      button.setAttribute("aria-pressed", String(item.rating === value));
      button.addEventListener("click", function (v) {
        send("/api/rating", {session: session, item: item.id, rating: v}, li, buttons, note, function (saved) {
          buttons.forEach(function (b, i) { b.setAttribute("aria-pressed", String(i + 1 === saved.rating)); });
          li.dataset.rating = String(saved.rating);
        });
      }.bind(null, value));
      buttons.push(button);
      stars.appendChild(button);
    }
    if (item.rating) li.dataset.rating = String(item.rating);
    stars.appendChild(note);
    li.appendChild(stars);
    if (!item.rating) lockUntilPlayed([audio], buttons, wait);
  }

  function pairItem(item, li, note, wait) {
    var pair = document.createElement("div");
    pair.className = "pair";
    var players = item.audio_urls.map(function (url, i) {
      var box = document.createElement("div");
      var name = document.createElement("div");
      name.className = "voice";
      name.textContent = i === 0 ? "First voice" : "Second voice";
      box.appendChild(name);
      var audio = player(url);
      box.appendChild(audio);
      pair.appendChild(box);
      return audio;
    });
    li.appendChild(pair);
    var choices = document.createElement("div");
    choices.className = "choices";
    var options = [["first", "I prefer the first"], ["second", "I prefer the second"]];
    if (settings.no_preference) options.push(["none", "No preference"]);
    var buttons = [];
    options.forEach(function (option) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = option[1];
      button.dataset.choice = option[0];
      button.setAttribute("aria-pressed", String(item.choice === option[0]));
      button.addEventListener("click", function () {
        send("/api/choice", {session: session, item: item.id, choice: option[0]}, li, buttons, note, function (saved) {
          buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.choice === saved.choice)); });
          li.dataset.choice = saved.choice;
        });
      });
      buttons.push(button);
      choices.appendChild(button);
    });
    if (item.choice) li.dataset.choice = item.choice;
    choices.appendChild(note);
    li.appendChild(choices);
    if (!item.choice) lockUntilPlayed(players, buttons, wait);
  }

  function itemElement(item) {
    var li = document.createElement("li");
    li.className = "item";
    li.dataset.item = item.id;
    var label = document.createElement("div");
    label.className = "label";
    label.textContent = kind === "pair" ? "Pair " + item.label : "Voice " + item.label;
    li.appendChild(label);
    if (typeof item.description === "string") {
      var description = document.createElement("p");
      description.className = "description";
      description.textContent = item.description;
      li.appendChild(description);
    }
    var note = document.createElement("span");
    note.className = "saved";
    var wait = document.createElement("p");
    wait.className = "wait";
    if (kind === "pair") pairItem(item, li, note, wait); else starItem(item, li, note, wait);
    li.appendChild(wait);
    if (item.rating || item.choice) {
      li.classList.add("rated");
      note.textContent = "saved";
    }
    return li;
  }

  function start(path, name) {
    say("loading…", false);
    fetch(withToken(path)).then(answer).then(function (body) {
      session = body.session;
      kind = body.kind;
      settings = body;
      joinedAs = path;
      if (name) {
        try { window.localStorage.setItem("cosyvoice-panel-rater", name); } catch (e) { /* private mode */ }
      }
      list.textContent = "";
      body.items.forEach(function (item) { list.appendChild(itemElement(item)); });
      total = body.items.length;
      rated = body.items.filter(function (item) { return item.rating || item.choice; }).length;
      form.hidden = true;
      say((kind === "pair" ? "Answering as " : "Rating as ") + body.rater + ".", false);
      showProgress();
    }).catch(function (err) { say(err.message, true); });
  }

  function rejoin() {
    if (joinedAs) start(joinedAs, null);
  }

  if (invite) {
    form.hidden = true;
    start("/api/session?invite=" + encodeURIComponent(invite), null);
  } else if (nameInput) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var name = nameInput.value.trim();
      if (name) start("/api/session?rater=" + encodeURIComponent(name), name);
    });
    try {
      var saved = window.localStorage.getItem("cosyvoice-panel-rater");
      if (saved) nameInput.value = saved;
    } catch (e) { /* storage refused: the rater types the name */ }
  }
})();
