// The segment builder: a rule of groups (all / any) and conditions (traits, events with counts
// and windows, lifecycle stage, tags, scores), each negatable, kept as the segment service's
// JSON; the member count and a sample previewed, through the console, as the rule changes.
// Every text a person typed is put in the page with textContent or .value, never as HTML.
(function () {
  "use strict";

  var form = document.getElementById("segment-form");
  var editor = document.getElementById("rule-editor");
  var hidden = document.getElementById("conditions");
  var shownJson = document.getElementById("rule-json");
  var countEl = document.getElementById("preview-count");
  var errorEl = document.getElementById("preview-error");
  var sampleEl = document.getElementById("preview-sample");
  var readOnly = form.querySelector("fieldset").disabled;
  var KINDS = [["trait", "Trait"], ["event", "Event"], ["lifecycle_stage", "Lifecycle stage"],
               ["tag", "Tag"], ["score", "Score"], ["raw", "Other (JSON)"]];
  var TESTS = [["eq", "is"], ["neq", "is not"], ["gt", ">"], ["gte", "≥"], ["lt", "<"],
               ["lte", "≤"], ["contains", "contains"], ["in", "is one of (JSON list)"],
               ["exists", "exists"]];
  var COUNTS = [["gte", "at least"], ["gt", "more than"], ["eq", "exactly"], ["lte", "at most"],
                ["lt", "fewer than"]];
  var STAGES = ["new", "active", "at_risk", "dormant", "churned"];
  var WINDOWS = [["", "ever"], ["D", "days"], ["H", "hours"], ["W", "weeks"]];

  var el = window.ConsolePage.el;

  function select(options, value, label, part) {
    var node = el("select", {"aria-label": label, "data-part": part});
    options.forEach(function (option) {
      var pair = Array.isArray(option) ? option : [option, option];
      node.appendChild(el("option", {value: pair[0], text: pair[1]}));
    });
    if (value !== undefined && value !== null) { node.value = value; }
    return node;
  }

  function input(value, label, part, type) {
    var node = el("input", {"aria-label": label, "data-part": part});
    if (type) { node.type = type; }
    node.value = value === undefined || value === null ? "" : value;
    return node;
  }

  // What a person typed as a value: JSON when it reads as a number, boolean, null or list;
  // otherwise the text itself.
  function typedValue(text) {
    var trimmed = text.trim();
    if (/^(-?\d+(\.\d+)?|true|false|null|\[.*\])$/.test(trimmed)) {
      try { return JSON.parse(trimmed); } catch (ignored) { return text; }
    }
    return text;
  }

  function shownValue(value) {
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function part(node, name) { return node.querySelector(':scope > [data-part="' + name + '"]'); }

  function negatable(node, negated) {
    var box = el("input", {type: "checkbox", "aria-label": "not", "data-part": "not"});
    box.checked = !!negated;
    node.appendChild(el("label", {class: "not"}, [box, document.createTextNode(" not")]));
    return function (rule) {
      return box.checked ? {not: rule} : rule;
    };
  }

  function removable(node) {
    if (readOnly) { return; }
    var button = el("button", {type: "button", class: "quiet remove", text: "Remove",
                               "aria-label": "Remove"});
    button.addEventListener("click", function () { node.remove(); changed(); });
    node.appendChild(button);
  }

  // --- conditions -------------------------------------------------------------------------

  function kindOf(rule) {
    if (rule && typeof rule === "object" && !Array.isArray(rule)) {
      if ("trait" in rule) { return "trait"; }
      if ("event" in rule) { return "event"; }
      if ("lifecycle_stage" in rule && typeof rule.lifecycle_stage === "string") {
        return "lifecycle_stage";
      }
      if ("tag" in rule) { return "tag"; }
      if ("score" in rule) { return "score"; }
    }
    return "raw";
  }

  function condition(rule, negated) {
    var node = el("div", {class: "condition", role: "group", "aria-label": "Condition"});
    var wrap = negatable(node, negated);
    var kind = select(KINDS, kindOf(rule), "kind", "kind");
    node.appendChild(kind);
    var fields = el("span", {class: "fields"});
    node.appendChild(fields);
    var read = fieldsFor(kind.value, rule, fields);
    kind.addEventListener("change", function () {
      fields.textContent = "";
      read = fieldsFor(kind.value, null, fields);
      changed();
    });
    removable(node);
    node.toRule = function () { return wrap(read()); };
    return node;
  }

  function fieldsFor(kind, rule, fields) {
    rule = rule || {};
    var add = function (node) { fields.appendChild(node); return node; };
    if (kind === "trait" || kind === "score") {
      var name = add(input(rule[kind], kind + " name", kind + "-name"));
      var test = add(select(TESTS, rule.op || (kind === "score" ? "gte" : "eq"), "test", "op"));
      var value = add(input(rule.value === undefined ? "" : shownValue(rule.value), "value", "value"));
      return function () {
        var built = {};
        built[kind] = name.value;
        built.op = test.value;
        if (test.value !== "exists") { built.value = typedValue(value.value); }
        return built;
      };
    }
    if (kind === "event") {
      var event = add(input(rule.event, "event name", "event-name"));
      var count = rule.count || {gte: 1};
      var countOp = Object.keys(count)[0] || "gte";
      var howMany = add(select(COUNTS, countOp, "how many times", "count-op"));
      var times = add(input(count[countOp], "times", "count", "number"));
      add(el("span", {text: "times in"}));
      var span = /^PT?(\d+)([DHW])$/.exec(rule.within || "") || [null, "", ""];
      var amount = add(input(span[1], "window length", "within-amount", "number"));
      var unit = add(select(WINDOWS, span[2], "window unit", "within-unit"));
      return function () {
        var built = {event: event.value, count: {}};
        built.count[howMany.value] = Number(times.value || 0);
        if (unit.value && amount.value) {
          built.within = (unit.value === "H" ? "PT" : "P") + Number(amount.value) + unit.value;
        }
        return built;
      };
    }
    if (kind === "lifecycle_stage") {
      var stage = add(select(STAGES, rule.lifecycle_stage, "stage", "stage"));
      return function () { return {lifecycle_stage: stage.value}; };
    }
    if (kind === "tag") {
      var tag = add(input(rule.tag, "tag", "tag"));
      return function () { return {tag: tag.value}; };
    }
    var raw = add(el("textarea", {"aria-label": "condition as JSON", "data-part": "raw", rows: "2",
                                  cols: "40"}));
    raw.value = rule && Object.keys(rule).length ? JSON.stringify(rule) : "";
    return function () {
      try { return JSON.parse(raw.value); } catch (ignored) { return raw.value; }
    };
  }

  // --- groups -----------------------------------------------------------------------------

  function group(rule, negated, isRoot) {
    var node = el("div", {class: "group", role: "group", "aria-label": "Group"});
    var head = el("div", {class: "node-head"});
    node.appendChild(head);
    var wrap = isRoot ? function (r) { return r; } : negatable(head, negated);
    var mode = select([["all", "all of these"], ["any", "any of these"]],
                      rule && "any" in rule ? "any" : "all", "match", "mode");
    head.appendChild(el("span", {text: "Profiles matching"}));
    head.appendChild(mode);
    var children = el("div", {class: "children"});
    node.appendChild(children);
    ((rule && (rule.all || rule.any)) || []).forEach(function (child) {
      children.appendChild(nodeFor(child, false));
    });
    if (!readOnly) {
      var addCondition = el("button", {type: "button", class: "quiet add-condition",
                                       text: "+ Condition"});
      addCondition.addEventListener("click", function () {
        children.appendChild(condition({trait: "", op: "eq", value: ""}, false));
        changed();
        children.lastChild.querySelector("input:not([type=checkbox]), select").focus();
      });
      var addGroup = el("button", {type: "button", class: "quiet add-group", text: "+ Group"});
      addGroup.addEventListener("click", function () {
        children.appendChild(group({any: []}, false, false));
        changed();
      });
      node.appendChild(el("div", {class: "node-head"}, [addCondition, addGroup]));
      if (!isRoot) { removable(head); }
    }
    node.toRule = function () {
      var built = {};
      built[mode.value] = Array.prototype.map.call(children.children, function (child) {
        return child.toRule();
      });
      return wrap(built);
    };
    return node;
  }

  function nodeFor(rule, negated) {
    if (rule && typeof rule === "object" && "not" in rule && Object.keys(rule).length === 1 &&
        !(rule.not && typeof rule.not === "object" && "not" in rule.not)) {
      return nodeFor(rule.not, true);
    }
    if (rule && typeof rule === "object" && (Array.isArray(rule.all) || Array.isArray(rule.any))) {
      return group(rule, negated, false);
    }
    return condition(rule, negated);
  }

  // --- preview ----------------------------------------------------------------------------

  var root = null;
  var timer = null;
  var asked = 0;

  function currentRule() { return root.toRule(); }

  function changed() {
    var rule = currentRule();
    var json = JSON.stringify(rule);
    hidden.value = json;
    shownJson.textContent = JSON.stringify(rule, null, 1);
    clearTimeout(timer);
    timer = setTimeout(function () { preview(json); }, 250);
  }

  function showError(message) {
    errorEl.hidden = !message;
    errorEl.textContent = message || "";
  }

  function preview(json) {
    var mine = ++asked;
    countEl.textContent = "…";
    var request = {conditions: JSON.parse(json)};
    window.ConsolePage.post("/segments/preview", request).then(function (response) {
      return response.json().then(function (body) { return [response.ok, body]; });
    }).then(function (answer) {
      if (mine !== asked) { return; }
      var ok = answer[0], body = answer[1];
      sampleEl.textContent = "";
      if (!ok) {
        countEl.textContent = "—";
        showError(body.error ? body.error.message : "The preview failed.");
        return;
      }
      showError("");
      countEl.textContent = String(body.count);
      body.sample.forEach(function (profile) {
        sampleEl.appendChild(el("li", {text: profile}));
      });
    }).catch(function () {
      if (mine === asked) { countEl.textContent = "—"; showError("The console did not answer."); }
    });
  }

  var initial = JSON.parse(document.getElementById("initial-rule").textContent);
  if (initial && typeof initial === "object" && "not" in initial && Object.keys(initial).length === 1) {
    initial = {all: [initial]};
  }
  if (!(initial && (Array.isArray(initial.all) || Array.isArray(initial.any)))) {
    initial = {all: [initial]};
  }
  root = group(initial, false, true);
  editor.appendChild(root);
  editor.addEventListener("input", changed);
  editor.addEventListener("change", changed);
  form.addEventListener("submit", function () { hidden.value = JSON.stringify(currentRule()); });
  changed();
}());
