// The journey canvas: the graph drawn and edited with Drawflow (drag a kind from the palette,
// connect an output port to a node), each node's settings in the side panel, the graph checked
// by the journey service as it changes (its 422 shown on the node it names), save, publish,
// pause and resume, and each node's counts from the service's stats.
// Everything a person typed reaches the page through textContent or .value, never as HTML.
(function () {
  "use strict";

  var G = window.JourneyGraph;
  var el = window.ConsolePage.el;
  var state = JSON.parse(document.getElementById("journey-state").textContent);
  var canEdit = state.can_edit;
  var journey = state.journey;
  var container = document.getElementById("journey-canvas");
  var panel = document.getElementById("node-form");
  var panelError = document.getElementById("node-error");
  var picker = document.getElementById("node-picker");
  var errorEl = document.getElementById("journey-error");
  var noticeEl = document.getElementById("journey-notice");
  var nameEl = document.getElementById("journey-name");
  var descriptionEl = document.getElementById("journey-description");
  var shownJson = document.getElementById("journey-json");
  var OUTCOMES = ["", "sent", "delivered", "opened", "clicked", "failed", "suppressed",
                  "unsubscribed"];
  // The panel's fields per kind: a dotted path in the node's settings, a label and a type.
  var FORMS = {
    entry: [
      {path: "entry.event", label: "Enters on the behaviour (event name)"},
      {path: "entry.segment", label: "Or on entering the segment (segment id)"},
      {path: "entry.where", label: "Only when (filters, JSON list)", type: "json"},
      {path: "entry.current_members", label: "Also enter the segment's members now",
       type: "bool"},
      {path: "reentry.rule", label: "Re-entry", type: "select",
       options: ["", "never", "always", "after"]},
      {path: "reentry.cooldown", label: "Re-entry cooldown (ISO 8601, such as P7D)"},
      {path: "goal", label: "Goal (JSON)", type: "json"},
      {path: "exit", label: "Exit rule (JSON)", type: "json"}
    ],
    send: [
      {path: "channel", label: "Channel", suggest: ["email", "sms", "push", "webhook", "wechat", "wechat_miniprogram", "wecom", "wecom_contact"]},
      {path: "template_id", label: "Template id"},
      {path: "variables", label: "Variables (JSON object)", type: "json"},
      {path: "at_best_time_within", label: "At the person's best hour within (such as PT24H)"},
      {path: "channels", label: "Or several channels (JSON list)", type: "json"}
    ],
    wait: [
      {path: "duration", label: "For (ISO 8601, such as P3D)"},
      {path: "until", label: "Or until (HH:MM, their time)"},
      {path: "best_time", label: "Or their best hour (JSON)", type: "json"}
    ],
    wait_for: [
      {path: "event", label: "The behaviour (event name)"},
      {path: "where", label: "Only when (filters, JSON list)", type: "json"},
      {path: "outcome", label: "Or an outcome", type: "select", options: OUTCOMES},
      {path: "node", label: "Of the send node", type: "send-node"},
      {path: "timeout", label: "At most (ISO 8601, such as P2D)"}
    ],
    branch: [{path: "branches", type: "paths"}],
    split: [{path: "arms", type: "arms"}],
    update_profile: [
      {path: "set_traits", label: "Set traits (JSON object)", type: "json"},
      {path: "unset_traits", label: "Unset traits (comma-separated)", type: "list"},
      {path: "add_tags", label: "Add tags (comma-separated)", type: "list"},
      {path: "remove_tags", label: "Remove tags (comma-separated)", type: "list"}
    ],
    exit: []
  };
  // What a node dropped from the palette starts with: the checks say what it still needs.
  var STARTING = {
    send: {channel: "email"},
    wait: {duration: "P1D"},
    wait_for: {timeout: "P1D"},
    branch: {branches: [{condition: {trait: "", value: ""}}]},
    split: {arms: [{name: "a", weight: 1}, {name: "b", weight: 1}]},
    update_profile: {},
    exit: {}
  };

  var editor = new Drawflow(container);
  var selected = null;
  var dirty = false;
  var checkTimer = null;
  var checkSeq = 0;
  var shownError = null;

  function nodes() { return editor.drawflow.drawflow.Home.data; }

  function dfIdOf(nodeId) {
    var found = null;
    Object.keys(nodes()).forEach(function (dfId) {
      if (nodes()[dfId].data.node_id === nodeId) { found = dfId; }
    });
    return found;
  }

  function nodeEl(dfId) { return document.getElementById("node-" + dfId); }

  function current() { return G.toDefinition(editor.export()); }

  // --- Reading and writing a node's settings by dotted path -------------------------------

  function getPath(body, path) {
    return path.split(".").reduce(function (value, key) {
      return value && typeof value === "object" ? value[key] : undefined;
    }, body);
  }

  function setPath(body, path, value) {
    var keys = path.split(".");
    var holder = body;
    keys.slice(0, -1).forEach(function (key) {
      if (!holder[key] || typeof holder[key] !== "object") { holder[key] = {}; }
      holder = holder[key];
    });
    if (value === undefined) { delete holder[keys[keys.length - 1]]; }
    else { holder[keys[keys.length - 1]] = value; }
    if (keys.length > 1 && Object.keys(holder).length === 0) { delete body[keys[0]]; }
  }

  // --- Drawing nodes ------------------------------------------------------------------------

  function summary(kind, body) {
    var entry = body.entry || {};
    switch (kind) {
      case "entry":
        if (entry.segment) { return "on entering " + entry.segment; }
        return entry.event ? "on " + entry.event : "no entry yet";
      case "send":
        return (body.channel || "several channels") + " · " + (body.template_id || "no template");
      case "wait":
        if (body.duration) { return "for " + body.duration; }
        return body.until ? "until " + body.until : "their best hour";
      case "wait_for":
        return (body.event ? "for " + body.event : (body.outcome || "?") + " of " +
                (body.node || "?")) + " · up to " + (body.timeout || "?");
      case "branch": return (body.branches || []).length + " path(s) and otherwise";
      case "split": return (body.arms || []).map(function (arm) { return arm.name; }).join(" / ");
      case "update_profile": return "changes the profile";
      default: return "leaves the journey";
    }
  }

  function decorate(dfId) {
    var node = nodes()[dfId];
    var element = nodeEl(dfId);
    if (!node || !element) { return; }
    var kind = node.data.kind;
    element.setAttribute("data-node-id", node.data.node_id);
    element.setAttribute("data-kind", kind);
    element.tabIndex = 0;
    element.setAttribute("role", "button");
    element.setAttribute("aria-label", G.KINDS[kind].label + " " +
                         (kind === "entry" ? "" : node.data.node_id));
    element.querySelector(".node-kind").textContent = G.KINDS[kind].label;
    element.querySelector(".node-id").textContent = kind === "entry" ? "" : node.data.node_id;
    var settings = G.settingsOf(node.data);
    element.querySelector(".node-summary").textContent = summary(kind, settings);
    G.edgesOf(kind, settings).forEach(function (edge, i) {
      var port = element.querySelector(".outputs .output_" + (i + 1));
      if (port) { port.setAttribute("data-label", edge[1]); port.setAttribute("title", edge[1]); }
    });
    element.classList.toggle("chosen", String(dfId) === String(selected));
  }

  function decorateAll() { Object.keys(nodes()).forEach(decorate); }

  function load(definition, layout) {
    editor.import(G.toDrawflow(definition, layout));
    decorateAll();
    fillPicker();
  }

  // --- Changes --------------------------------------------------------------------------------

  function changed() {
    dirty = true;
    shownJson.textContent = JSON.stringify(current().definition, null, 1);
    scheduleCheck();
  }

  // Change a node's settings in place (Drawflow keeps `data` by reference).
  function changeSettings(dfId, change) {
    var data = nodes()[dfId].data;
    var settings = G.settingsOf(data);
    change(settings);
    data.settings = JSON.stringify(settings);
    decorate(dfId);
    changed();
  }

  function setBody(dfId, path, value) {
    changeSettings(dfId, function (settings) { setPath(settings, path, value); });
  }

  // A change of ports (paths, arms): redraw the whole graph from its definition.
  function reshape(dfId, change) {
    var nodeId = nodes()[dfId].data.node_id;
    var drawn = current();
    change(drawn.definition.nodes[nodeId]);
    load(drawn.definition, drawn.layout);
    select(dfIdOf(nodeId));
    changed();
  }

  function nextNodeId(kind) {
    var taken = {};
    Object.keys(nodes()).forEach(function (dfId) { taken[nodes()[dfId].data.node_id] = true; });
    var n = 1;
    while (taken[kind + "_" + n]) { n += 1; }
    return kind + "_" + n;
  }

  function addNode(kind, x, y) {
    var body = JSON.parse(JSON.stringify(STARTING[kind]));
    var nodeId = nextNodeId(kind);
    var ports = G.edgesOf(kind, body).length;
    var dfId = editor.addNode(kind, 1, ports, x, y, "journey-node kind-" + kind,
                              {node_id: nodeId, kind: kind, settings: JSON.stringify(body)},
                              G.NODE_HTML);
    decorate(dfId);
    fillPicker();
    select(dfId);
    changed();
    return dfId;
  }

  function placeFree() {
    var most = 0;
    Object.keys(nodes()).forEach(function (dfId) { most = Math.max(most, nodes()[dfId].pos_x); });
    return {x: most + 220, y: 40};
  }

  function connect(dfId, port, targetDfId) {
    var output = nodes()[dfId].outputs[port];
    output.connections.slice().forEach(function (connection) {
      editor.removeSingleConnection(dfId, connection.node, port, connection.output);
    });
    if (targetDfId) { editor.addConnection(dfId, targetDfId, port, "input_1"); }
  }

  // --- The side panel -------------------------------------------------------------------------

  function fillPicker() {
    picker.textContent = "";
    picker.appendChild(el("option", {value: "", text: "Choose a node…"}));
    Object.keys(nodes()).forEach(function (dfId) {
      var data = nodes()[dfId].data;
      var text = data.kind === "entry" ? "Entry"
        : data.node_id + " (" + G.KINDS[data.kind].label + ")";
      picker.appendChild(el("option", {value: dfId, text: text}));
    });
    picker.value = selected === null ? "" : String(selected);
  }

  function select(dfId) {
    selected = dfId === null || dfId === undefined || !nodes()[dfId] ? null : dfId;
    picker.value = selected === null ? "" : String(selected);
    Object.keys(nodes()).forEach(decorate);
    showPanel();
  }

  function field(labelText, control) {
    return el("label", {}, [document.createTextNode(labelText), control]);
  }

  function textControl(dfId, spec, value) {
    var input = el("input", {type: "text", "data-path": spec.path});
    input.value = value === undefined ? "" : String(value);
    if (spec.suggest) {
      var list = el("datalist", {id: "suggest-" + spec.path.replace(/\W/g, "-")});
      spec.suggest.forEach(function (option) { list.appendChild(el("option", {value: option})); });
      input.setAttribute("list", list.id);
      panel.appendChild(list);
    }
    input.addEventListener("input", function () {
      setBody(dfId, spec.path, input.value === "" ? undefined : input.value);
    });
    return input;
  }

  function selectControl(dfId, spec, value, options) {
    var choice = el("select", {"data-path": spec.path});
    options.forEach(function (option) {
      choice.appendChild(el("option", {value: option, text: option === "" ? "—" : option}));
    });
    choice.value = value === undefined ? "" : String(value);
    choice.addEventListener("change", function () {
      setBody(dfId, spec.path, choice.value === "" ? undefined : choice.value);
    });
    return choice;
  }

  function jsonControl(dfId, spec, value, onValue) {
    var area = el("textarea", {rows: "3", "data-path": spec.path, spellcheck: "false"});
    area.value = value === undefined ? "" : JSON.stringify(value);
    area.addEventListener("input", function () {
      if (area.value.trim() === "") {
        area.removeAttribute("aria-invalid");
        onValue(undefined);
        return;
      }
      try {
        var parsed = JSON.parse(area.value);
        area.removeAttribute("aria-invalid");
        onValue(parsed);
      } catch (notYet) {
        area.setAttribute("aria-invalid", "true");
      }
    });
    return area;
  }

  function listControl(dfId, spec, value) {
    var input = el("input", {type: "text", "data-path": spec.path});
    input.value = Array.isArray(value) ? value.join(", ") : "";
    input.addEventListener("input", function () {
      var names = input.value.split(",").map(function (name) { return name.trim(); })
        .filter(function (name) { return name !== ""; });
      setBody(dfId, spec.path, names.length ? names : undefined);
    });
    return input;
  }

  function boolControl(dfId, spec, value) {
    var box = el("input", {type: "checkbox", "data-path": spec.path});
    box.checked = value === true;
    box.addEventListener("change", function () {
      setBody(dfId, spec.path, box.checked ? true : undefined);
    });
    return box;
  }

  function sendNodes() {
    return [""].concat(Object.keys(nodes()).map(function (dfId) { return nodes()[dfId].data; })
      .filter(function (data) { return data.kind === "send"; })
      .map(function (data) { return data.node_id; }));
  }

  function pathsEditor(dfId, body) {
    var box = el("div", {class: "paths"});
    (body.branches || []).forEach(function (path, i) {
      var area = jsonControl(dfId, {path: "branches." + i}, path.condition, function (parsed) {
        changeSettings(dfId, function (settings) {
          settings.branches[i].condition = parsed === undefined ? {} : parsed;
        });
      });
      box.appendChild(field("Path " + (i + 1) + ": when (a condition, JSON)", area));
    });
    box.appendChild(el("p", {class: "hint", text: "Otherwise: the last port."}));
    box.appendChild(reshapeButton(dfId, "Add a path", "add-path", function (node) {
      node.branches.push({condition: {trait: "", value: ""}});
    }));
    if ((body.branches || []).length > 1) {
      box.appendChild(reshapeButton(dfId, "Remove the last path", "remove-path", function (node) {
        node.branches.pop();
      }));
    }
    return box;
  }

  function armsEditor(dfId, body) {
    var box = el("div", {class: "arms"});
    (body.arms || []).forEach(function (arm, i) {
      var name = el("input", {type: "text", "data-path": "arms." + i + ".name"});
      name.value = arm.name === undefined ? "" : String(arm.name);
      var weight = el("input", {type: "number", min: "0", step: "any",
                                "data-path": "arms." + i + ".weight"});
      weight.value = arm.weight === undefined ? "" : String(arm.weight);
      function update() {
        changeSettings(dfId, function (settings) {
          settings.arms[i].name = name.value;
          settings.arms[i].weight = weight.value === "" ? undefined : Number(weight.value);
        });
      }
      name.addEventListener("input", update);
      weight.addEventListener("input", update);
      box.appendChild(el("div", {class: "arm"}, [field("Arm " + (i + 1) + " name", name),
                                                 field("weight", weight)]));
    });
    box.appendChild(reshapeButton(dfId, "Add an arm", "add-arm", function (node) {
      node.arms.push({name: "arm_" + (node.arms.length + 1), weight: 1});
    }));
    if ((body.arms || []).length > 1) {
      box.appendChild(reshapeButton(dfId, "Remove the last arm", "remove-arm", function (node) {
        node.arms.pop();
      }));
    }
    return box;
  }

  function reshapeButton(dfId, text, name, change) {
    var button = el("button", {type: "button", class: "quiet", "data-action": name, text: text});
    button.addEventListener("click", function () { reshape(dfId, change); });
    return button;
  }

  // Each output port's target, chosen from a list: connecting without a mouse.
  function nextEditors(dfId) {
    var node = nodes()[dfId];
    var box = el("div", {class: "next-nodes"});
    G.edgesOf(node.data.kind, G.settingsOf(node.data)).forEach(function (edge, i) {
      var port = "output_" + (i + 1);
      var choice = el("select", {"data-port": port});
      choice.appendChild(el("option", {value: "", text: "(ends here)"}));
      Object.keys(nodes()).forEach(function (other) {
        var data = nodes()[other].data;
        if (other !== String(dfId) && data.kind !== "entry") {
          choice.appendChild(el("option", {value: other, text: data.node_id}));
        }
      });
      var connections = node.outputs[port] ? node.outputs[port].connections : [];
      choice.value = connections.length ? String(connections[0].node) : "";
      choice.addEventListener("change", function () { connect(dfId, port, choice.value || null); });
      box.appendChild(field("Then (" + edge[1] + ")", choice));
    });
    return box;
  }

  function controlFor(dfId, spec, body) {
    var value = getPath(body, spec.path);
    switch (spec.type) {
      case "select": return selectControl(dfId, spec, value, spec.options);
      case "send-node": return selectControl(dfId, spec, value, sendNodes());
      case "json": return jsonControl(dfId, spec, value, function (parsed) {
        setBody(dfId, spec.path, parsed);
      });
      case "list": return listControl(dfId, spec, value);
      case "bool": return boolControl(dfId, spec, value);
      default: return textControl(dfId, spec, value);
    }
  }

  function showPanel() {
    panel.textContent = "";
    if (selected === null) {
      panel.appendChild(el("p", {class: "hint", text: "Choose a node on the canvas or above."}));
      showPanelError();
      return;
    }
    var node = nodes()[selected];
    var kind = node.data.kind;
    var settings = G.settingsOf(node.data);
    var title = G.KINDS[kind].label + (kind === "entry" ? "" : " · " + node.data.node_id);
    var form = el("fieldset", {"data-kind": kind}, [el("legend", {text: title})]);
    FORMS[kind].forEach(function (spec) {
      if (spec.type === "paths") { form.appendChild(pathsEditor(selected, settings)); }
      else if (spec.type === "arms") { form.appendChild(armsEditor(selected, settings)); }
      else { form.appendChild(field(spec.label, controlFor(selected, spec, settings))); }
    });
    form.appendChild(nextEditors(selected));
    if (kind !== "entry") {
      var remove = el("button", {type: "button", class: "quiet danger-text",
                                 "data-action": "remove-node", text: "Remove this node"});
      var dfId = selected;
      remove.addEventListener("click", function () { removeNode(dfId); });
      form.appendChild(remove);
    }
    form.disabled = !canEdit;
    panel.appendChild(form);
    showPanelError();
  }

  function showPanelError() {
    var mine = shownError !== null && selected !== null && shownError.dfId === String(selected);
    panelError.hidden = !mine;
    panelError.textContent = mine ? shownError.message : "";
  }

  function removeNode(dfId) {
    editor.removeNodeId("node-" + dfId);  // nodeRemoved follows
  }

  // --- Checks, refusals and saving -----------------------------------------------------------

  function clearRefusal() {
    shownError = null;
    errorEl.hidden = true;
    errorEl.textContent = "";
    errorEl.setAttribute("data-field", "");
    Array.prototype.forEach.call(container.querySelectorAll(".drawflow-node"), function (node) {
      node.classList.remove("invalid");
      node.querySelector(".node-error").textContent = "";
    });
    nameEl.removeAttribute("aria-invalid");
    showPanelError();
  }

  // The service's refusal shown where it belongs: on the node its field names, else above.
  function showRefusal(error) {
    clearRefusal();
    var field = error.field || "";
    var nodeIds = Object.keys(nodes()).map(function (dfId) { return nodes()[dfId].data.node_id; });
    var named = G.nodeOfField(field, nodeIds);
    var dfId = named === null ? null : dfIdOf(named);
    errorEl.hidden = false;
    errorEl.textContent = error.message;
    errorEl.setAttribute("data-field", field);
    if (dfId !== null) {
      var element = nodeEl(dfId);
      element.classList.add("invalid");
      element.querySelector(".node-error").textContent = error.message;
      element.setAttribute("data-field", field);
      shownError = {dfId: String(dfId), message: error.message};
    } else if (field === "body.name" || field === "name") {
      nameEl.setAttribute("aria-invalid", "true");
    }
    showPanelError();
  }

  function post(path, body) {
    return window.ConsolePage.post(path, body).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (answer) {
        return {ok: response.ok, status: response.status, answer: answer};
      });
    });
  }

  function refusalOf(result) {
    return result.answer && result.answer.error ? result.answer.error
      : {message: "The console answered " + result.status + ".", field: null};
  }

  function scheduleCheck() {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(check, 300);
  }

  function check() {
    var seq = ++checkSeq;
    document.body.setAttribute("data-check", "pending");
    post("/journeys/validate", {definition: current().definition}).then(function (result) {
      if (seq !== checkSeq) { return; }
      if (result.ok) {
        clearRefusal();
        noticeEl.textContent = "The graph is valid.";
        document.body.setAttribute("data-check", "valid");
      } else {
        showRefusal(refusalOf(result));
        noticeEl.textContent = "";
        document.body.setAttribute("data-check", "invalid");
      }
    });
  }

  function draft() {
    var drawn = current();
    return {name: nameEl.value, description: descriptionEl.value,
            definition: drawn.definition, layout: drawn.layout};
  }

  function save() {
    var path = journey ? "/journeys/" + encodeURIComponent(journey.id) : "/journeys";
    return post(path, draft()).then(function (result) {
      if (!result.ok) {
        showRefusal(refusalOf(result));
        return false;
      }
      if (!journey) {
        location.assign("/journeys/" + encodeURIComponent(result.answer.id));
        return false;
      }
      dirty = false;
      showJourney(result.answer);
      noticeEl.textContent = "Draft saved.";
      return true;
    });
  }

  function act(action) {
    var saved = dirty && action === "publish" ? save() : Promise.resolve(true);
    return saved.then(function (ok) {
      if (!ok) { return; }
      post("/journeys/" + encodeURIComponent(journey.id) + "/" + action).then(function (result) {
        if (!result.ok) { showRefusal(refusalOf(result)); return; }
        showJourney(result.answer);
        noticeEl.textContent = DONE[action];
      });
    });
  }

  var DONE = {publish: "Published.", pause: "Paused.", resume: "Resumed."};

  function showJourney(summaryOfJourney) {
    journey = summaryOfJourney;
    document.getElementById("journey-status").textContent = journey.status;
    document.getElementById("journey-version").textContent =
      journey.published_version === null ? "none yet" : String(journey.published_version);
    var buttons = {publish: true, pause: journey.status === "active",
                   resume: journey.status === "paused"};
    Object.keys(buttons).forEach(function (action) {
      var button = document.getElementById(action + "-journey");
      if (button) { button.disabled = !buttons[action]; }
    });
  }

  // --- Live counts ---------------------------------------------------------------------------

  function countsText(kind, counts) {
    var parts = [counts.entered + " entered", counts.waiting + " waiting",
                 counts.completed + " went on"];
    if (kind === "wait_for") {
      parts.push(counts.matched + " came", counts.timed_out + " timed out");
    }
    if (kind === "exit" || counts.exited) { parts.push(counts.exited + " exited"); }
    Object.keys(counts.outcomes || {}).forEach(function (outcome) {
      parts.push(counts.outcomes[outcome] + " " + outcome);
    });
    Object.keys(counts.arms || {}).forEach(function (arm) {
      parts.push(counts.arms[arm] + " " + arm);
    });
    return parts.join(" · ");
  }

  function showStats(stats) {
    Object.keys(nodes()).forEach(function (dfId) {
      var data = nodes()[dfId].data;
      var element = nodeEl(dfId);
      if (!element) { return; }
      var box = element.querySelector(".node-stats");
      var counts = data.kind === "entry"
        ? {entered: stats.total.entered, waiting: stats.total.in_progress,
           completed: stats.total.completed, exited: stats.total.exited}
        : stats.nodes[data.node_id] || {entered: 0, waiting: 0, completed: 0, exited: 0};
      box.textContent = data.kind === "entry"
        ? counts.entered + " entered · " + counts.waiting + " in it · " + counts.completed +
          " completed"
        : countsText(data.kind, counts);
      box.setAttribute("data-entered", String(counts.entered));
      box.setAttribute("data-waiting", String(counts.waiting));
      box.setAttribute("data-completed", String(counts.completed));
    });
  }

  function pollStats() {
    if (!journey) { return; }
    fetch("/journeys/" + encodeURIComponent(journey.id) + "/stats", {credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (stats) { if (stats) { showStats(stats); } })
      .catch(function () { return null; })
      .then(function () { setTimeout(pollStats, 2000); });
  }

  // --- The palette: drag a kind onto the canvas, or press it to add one ---------------------

  function canvasPoint(clientX, clientY) {
    var rect = editor.precanvas.getBoundingClientRect();
    return {x: Math.round((clientX - rect.x) / editor.zoom - 80),
            y: Math.round((clientY - rect.y) / editor.zoom - 20)};
  }

  function startPalette() {
    var palette = document.getElementById("palette");
    if (!palette) { return; }
    var dragging = null;
    var justDragged = false;
    palette.addEventListener("pointerdown", function (event) {
      var item = event.target.closest(".palette-item");
      justDragged = false;
      if (!item || event.button !== 0) { return; }
      dragging = {kind: item.getAttribute("data-kind"), x: event.clientX, y: event.clientY,
                  ghost: null};
    });
    document.addEventListener("pointermove", function (event) {
      if (!dragging) { return; }
      var moved = Math.abs(event.clientX - dragging.x) + Math.abs(event.clientY - dragging.y);
      if (!dragging.ghost && moved > 6) {
        dragging.ghost = el("div", {class: "palette-ghost", text: G.KINDS[dragging.kind].label});
        document.body.appendChild(dragging.ghost);
      }
      if (dragging.ghost) {
        dragging.ghost.style.left = event.clientX + "px";
        dragging.ghost.style.top = event.clientY + "px";
      }
    });
    document.addEventListener("pointerup", function (event) {
      if (!dragging) { return; }
      var dropped = dragging;
      dragging = null;
      if (!dropped.ghost) { return; }
      justDragged = true;
      dropped.ghost.remove();
      var rect = container.getBoundingClientRect();
      if (event.clientX >= rect.left && event.clientX <= rect.right &&
          event.clientY >= rect.top && event.clientY <= rect.bottom) {
        var point = canvasPoint(event.clientX, event.clientY);
        addNode(dropped.kind, point.x, point.y);
      }
    });
    palette.addEventListener("click", function (event) {
      var item = event.target.closest(".palette-item");
      // A click that ends a drag adds nothing more; a key press (detail 0) always adds.
      if (!item || (event.detail > 0 && justDragged)) { return; }
      var spot = placeFree();
      addNode(item.getAttribute("data-kind"), spot.x, spot.y);
    });
  }

  // --- Start ----------------------------------------------------------------------------------

  // The entry cannot be removed: keep Drawflow's Delete key and context menu off it.
  ["keydown", "contextmenu"].forEach(function (type) {
    container.addEventListener(type, function (event) {
      var entrySelected = selected !== null && nodes()[selected] &&
        nodes()[selected].data.kind === "entry";
      var deleting = event.key === "Delete" || event.key === "Backspace";
      if (entrySelected && (type === "contextmenu" || deleting)) {
        event.stopImmediatePropagation();
        event.preventDefault();
      }
    }, true);
  });
  container.addEventListener("keydown", function (event) {
    var element = event.target.closest && event.target.closest(".drawflow-node");
    if (element && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      select(element.id.slice("node-".length));
    }
  });

  editor.reroute = false;
  editor.editor_mode = canEdit ? "edit" : "view";
  editor.start();
  load(state.definition, state.layout);
  editor.on("nodeSelected", function (dfId) { select(dfId); });
  editor.on("nodeMoved", function () { dirty = true; });
  editor.on("nodeRemoved", function (dfId) {
    if (String(selected) === String(dfId)) { select(null); }
    fillPicker();
    changed();
  });
  editor.on("connectionCreated", function (connection) {
    // One target per port: a new connection replaces the port's earlier one.
    var output = nodes()[connection.output_id].outputs[connection.output_class];
    output.connections.slice().forEach(function (other) {
      if (String(other.node) !== String(connection.input_id)) {
        editor.removeSingleConnection(connection.output_id, other.node,
                                      connection.output_class, other.output);
      }
    });
    if (selected !== null) { showPanel(); }
    changed();
  });
  editor.on("connectionRemoved", function () {
    if (selected !== null) { showPanel(); }
    changed();
  });
  picker.addEventListener("change", function () { select(picker.value || null); });
  nameEl.addEventListener("input", function () { dirty = true; });
  descriptionEl.addEventListener("input", function () { dirty = true; });
  if (canEdit) {
    startPalette();
    document.getElementById("save-journey").addEventListener("click", save);
    ["publish", "pause", "resume"].forEach(function (action) {
      var button = document.getElementById(action + "-journey");
      if (button) { button.addEventListener("click", function () { act(action); }); }
    });
  }
  if (journey) { showJourney(journey); }
  select(null);
  shownJson.textContent = JSON.stringify(current().definition, null, 1);
  dirty = false;
  if (canEdit) { check(); }
  pollStats();
}());
