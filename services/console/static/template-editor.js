// The template editor: Liquid highlighted under each source as one types, variants added and
// removed side by side, a preview for a person (an email in a sandboxed frame, an SMS or a push
// on a phone), and copy suggestions. Text reaches the page only through textContent, .value and
// the sandboxed frame's srcdoc, never as the page's own HTML.
(function () {
  "use strict";

  // --- Liquid highlighting ------------------------------------------------------------------
  // A <pre> under each transparent textarea shows the same text, coloured: output tags, logic
  // tags, their keywords, strings and filters. An unclosed tag is marked to the end.

  var LIQUID = /(\{\{[\s\S]*?(?:\}\}|$)|\{%[\s\S]*?(?:%\}|$))/;
  var INNER = /("[^"]*"?|'[^']*'?)|(\|\s*[A-Za-z_][\w-]*)|\b(if|elsif|else|endif|unless|endunless|for|endfor|case|when|endcase|assign|capture|endcapture|comment|endcomment|raw|endraw|break|continue|cycle|increment|decrement|tablerow|endtablerow|liquid|echo|render|include|with|in|and|or|contains)\b/g;

  function span(className, text) {
    var node = document.createElement("span");
    node.className = className;
    node.textContent = text;
    return node;
  }

  function paintInside(into, text) {
    var last = 0;
    var match;
    INNER.lastIndex = 0;
    while ((match = INNER.exec(text)) !== null) {
      if (match.index > last) { into.appendChild(document.createTextNode(text.slice(last, match.index))); }
      into.appendChild(span(match[1] ? "lq-string" : match[2] ? "lq-filter" : "lq-keyword", match[0]));
      last = INNER.lastIndex;
    }
    if (last < text.length) { into.appendChild(document.createTextNode(text.slice(last))); }
  }

  function paint(code, source) {
    code.textContent = "";
    source.split(LIQUID).forEach(function (part, position) {
      if (!part) { return; }
      if (position % 2 === 0) {  // split keeps the tags at odd positions
        code.appendChild(document.createTextNode(part));
        return;
      }
      var closing = part.charAt(1) === "%" ? "%}" : "}}";
      var closed = part.length >= 4 && part.slice(-2) === closing;
      var tag = span(part.charAt(1) === "%" ? "lq-tag" : "lq-output", "");
      tag.appendChild(span("lq-delimiter", part.slice(0, 2)));
      paintInside(tag, part.slice(2, closed ? -2 : part.length));
      if (closed) { tag.appendChild(span("lq-delimiter", closing)); }
      else { tag.classList.add("lq-unclosed"); }
      code.appendChild(tag);
    });
    code.appendChild(document.createTextNode("\n"));  // so that a last empty line shows
  }

  function highlight(textarea) {
    var box = textarea.parentNode;
    var shadow = document.createElement("pre");
    shadow.className = "liquid-shadow";
    shadow.setAttribute("aria-hidden", "true");
    var code = document.createElement("code");
    shadow.appendChild(code);
    box.insertBefore(shadow, textarea);
    box.classList.add("highlighted");
    function follow() { shadow.scrollTop = textarea.scrollTop; shadow.scrollLeft = textarea.scrollLeft; }
    function update() { paint(code, textarea.value); follow(); }
    textarea.addEventListener("input", update);
    textarea.addEventListener("scroll", follow);
    update();
  }

  // --- variants side by side ----------------------------------------------------------------

  var variants = document.getElementById("variants");
  var blank = document.getElementById("variant-blank");
  var addButton = document.getElementById("add-variant");

  function columns() { return Array.prototype.slice.call(variants.querySelectorAll(".variant")); }

  function unusedId() {
    var used = columns().map(function (column) { return column.querySelector(".variant-id").value; });
    for (var code = 97; code < 123; code++) {
      if (used.indexOf(String.fromCharCode(code)) < 0) { return String.fromCharCode(code); }
    }
    return "v" + (used.length + 1);
  }

  function prepare(column) {
    column.querySelectorAll("textarea.liquid-source").forEach(highlight);
    var remove = column.querySelector(".remove-variant");
    if (remove) {
      remove.addEventListener("click", function () {
        if (columns().length > 1) { column.remove(); }
      });
    }
  }

  function addVariant(fields) {
    var index = columns().reduce(function (highest, column) {
      return Math.max(highest, Number(column.getAttribute("data-index")) + 1);
    }, 0);
    var copy = blank.content.cloneNode(true);
    copy.querySelectorAll("*").forEach(function (node) {
      ["name", "id", "for", "data-index", "aria-describedby"].forEach(function (attribute) {
        var value = node.getAttribute(attribute);
        if (value !== null) { node.setAttribute(attribute, value.split("__index__").join(String(index))); }
      });
    });
    var column = copy.querySelector(".variant");
    var id = unusedId();
    column.querySelector(".variant-id").value = id;
    column.setAttribute("aria-label", "Variant " + id);
    Object.keys(fields || {}).forEach(function (name) {
      var source = column.querySelector('textarea[data-field="' + name + '"]');
      var value = fields[name];
      if (source) { source.value = typeof value === "string" ? value : JSON.stringify(value, null, 1); }
    });
    variants.appendChild(copy);
    prepare(column);
    column.querySelector(".variant-id").focus();
    return column;
  }

  columns().forEach(prepare);
  if (addButton) { addButton.addEventListener("click", function () { addVariant({}); }); }

  // --- asking the console -------------------------------------------------------------------

  function post(url, body) {
    return window.ConsolePage.post(url, body).then(function (response) {
      return response.json().then(function (answer) { return {ok: response.ok, body: answer}; });
    });
  }

  function refusal(answer, fallback) {
    var error = answer.body && answer.body.error;
    return error ? {field: error.field || "", message: error.message} : {field: "", message: fallback};
  }

  function showError(node, error) {
    node.hidden = !error;
    node.textContent = error ? error.message : "";
    node.setAttribute("data-field", error ? error.field : "");
  }

  // --- preview ------------------------------------------------------------------------------

  var previewForm = document.getElementById("preview-form");

  function byId(id) { return document.getElementById(id); }

  function setText(id, text) {
    var node = byId(id);
    if (node) { node.textContent = text || ""; }
  }

  function showPreview(answer) {
    var fields = answer.fields;
    setText("preview-for", "For " + answer.profile_id + " · variant " + answer.variant_id +
            " · version " + answer.template_version);
    if (answer.channel === "email") {
      setText("preview-subject", fields.subject);
      byId("preview-email").srcdoc = fields.html || "";  // the frame's sandbox runs no script
      setText("preview-text", fields.text);
    } else if (answer.channel === "sms") {
      setText("preview-sms", fields.text);
      var sms = answer.sms;
      setText("preview-sms-length", sms.characters + " characters (" + sms.encoding + ", " +
              sms.per_segment + " a message) · " + sms.segments +
              (sms.segments === 1 ? " message" : " messages"));
    } else if (answer.channel === "push") {
      setText("preview-push-title", fields.title);
      setText("preview-push-body", fields.body);
    } else {
      setText("preview-fields", JSON.stringify(fields, null, 1));
    }
    byId("preview-result").hidden = false;
  }

  if (previewForm) {
    previewForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var errorNode = byId("preview-error");
      var variables;
      try {
        variables = JSON.parse(byId("preview-variables").value || "{}");
      } catch (ignored) {
        showError(errorNode, {field: "variables", message: "variables: not JSON"});
        return;
      }
      post(previewForm.getAttribute("data-url"), {
        profile: byId("preview-profile").value,
        variant_id: byId("preview-variant").value || null,
        variables: variables
      }).then(function (answer) {
        if (!answer.ok) { showError(errorNode, refusal(answer, "The preview failed.")); return; }
        showError(errorNode, null);
        showPreview(answer.body);
      }).catch(function () {
        showError(errorNode, {field: "", message: "The console did not answer."});
      });
    });
  }

  // --- copy suggestions ---------------------------------------------------------------------

  var suggestForm = document.getElementById("suggest-form");

  function suggestionItem(suggestion) {
    var item = document.createElement("li");
    var list = document.createElement("dl");
    Object.keys(suggestion.fields).forEach(function (name) {
      var value = suggestion.fields[name];
      var term = document.createElement("dt");
      term.textContent = name;
      list.appendChild(term);
      var text = document.createElement("dd");
      text.textContent = typeof value === "string" ? value : JSON.stringify(value);
      list.appendChild(text);
    });
    item.appendChild(list);
    if (suggestion.rationale) {
      var why = document.createElement("p");
      why.className = "muted";
      why.textContent = suggestion.rationale;
      item.appendChild(why);
    }
    if (addButton) {
      var use = document.createElement("button");
      use.type = "button";
      use.className = "quiet use-suggestion";
      use.textContent = "Use in a new variant";
      use.addEventListener("click", function () { addVariant(suggestion.fields); });
      item.appendChild(use);
    }
    return item;
  }

  if (suggestForm) {
    suggestForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var errorNode = byId("suggest-error");
      var listed = byId("suggestions");
      post("/copy/suggestions", {
        channel: suggestForm.getAttribute("data-channel"),
        brief: byId("suggest-brief").value,
        count: Number(byId("suggest-count").value)
      }).then(function (answer) {
        listed.textContent = "";
        if (!answer.ok) { showError(errorNode, refusal(answer, "No suggestions came.")); return; }
        showError(errorNode, null);
        var source = byId("suggest-source");
        source.hidden = false;
        source.textContent = answer.body.source === "llm" ? "Written by the model." :
          "Recombined from the best variants. " + (answer.body.note || "");
        answer.body.suggestions.forEach(function (suggestion) {
          listed.appendChild(suggestionItem(suggestion));
        });
      }).catch(function () {
        showError(errorNode, {field: "", message: "The console did not answer."});
      });
    });
  }
}());
