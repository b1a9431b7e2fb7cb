// What every page's script shares: asking the console (`post`: a POST from the signed-in page,
// carrying its session's CSRF token from the page's <meta name="csrf-token"> and, when given, a
// JSON body; it answers fetch's own Response, which each page reads as it needs), and making
// elements (`el`: text only through textContent, never as HTML).
(function () {
  "use strict";

  var csrf = document.querySelector('meta[name="csrf-token"]').content;

  function post(path, body) {
    var init = {method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init);
  }

  function el(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attributes[key]; }
      else { node.setAttribute(key, attributes[key]); }
    });
    (children || []).forEach(function (child) { node.appendChild(child); });
    return node;
  }

  window.ConsolePage = {post: post, el: el};
}());
