// Asking the console from a page's script: a POST from the signed-in page, carrying its
// session's CSRF token (the page's <meta name="csrf-token">) and, when given, a JSON body.
// It answers fetch's own Response; each page reads it as it needs.
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

  window.ConsoleFetch = {post: post};
}());
