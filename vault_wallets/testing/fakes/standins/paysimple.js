/* Stand-in for PaySimpleJS (served by vault_wallets.testing.fakes.paysimple), for offline tests.
 *
 * Same surface as the real library per BROWSER-SDKS.md §1.4: a global paysimpleJs(config)
 * (config.container, config.auth.token, bypassPostalCodeValidation, preventAutocomplete, styles)
 * returning {on(event, cb), send: {setMode(mode), retrieveAccount({firstName, lastName, email})}};
 * events accountRetrieved {account:{id}, customer:{id, firstName, lastName, email}, paymentToken},
 * formValidityChanged {validity: 'true'|'false'} and httpError {errorKey, errors:[{field, message}],
 * status}.  Differences, on purpose: the fields are plain inputs in the container (the real
 * library draws a PaySimple-hosted iframe), and it talks to the fake's /_fake/standin/ route.
 */
(function () {
  "use strict";
  var current = document.currentScript;
  var origin = new URL(current ? current.src : location.href).origin;
  var counter = 0;

  function field(id, label, name, placeholder, autocomplete) {
    return '<label for="' + id + '" style="display:block;margin:.3rem 0 .1rem;font-size:.9rem">' + label + '</label>' +
      '<input id="' + id + '" data-standin="' + name + '" placeholder="' + placeholder + '" autocomplete="' + autocomplete +
      '" style="padding:.45rem;border:1px solid #bbb;border-radius:5px;font:inherit;width:100%;box-sizing:border-box">';
  }

  function paysimpleJs(config) {
    if (!config || !config.container) throw new Error("paysimpleJs: config.container is required");
    if (!config.auth || !config.auth.token) throw new Error("paysimpleJs: config.auth.token is required");
    var listeners = {};
    var mode = "cc-key-enter";
    var prefix = "psjs-standin-" + (++counter);
    var box = document.createElement("div");
    box.className = "paysimplejs-standin";
    box.style.cssText = "display:grid;grid-template-columns:2fr 1fr 1fr 1fr;gap:.6rem;align-items:end";
    config.container.appendChild(box);

    function emit(name, payload) { (listeners[name] || []).forEach(function (cb) { cb(payload); }); }

    function values() {
      var out = {};
      box.querySelectorAll("[data-standin]").forEach(function (input) { out[input.dataset.standin] = input.value.trim(); });
      return out;
    }

    function render() {
      if (mode === "ach-key-enter") {
        box.innerHTML = "<div>" + field(prefix + "-routing", "Routing number", "routing_number", "", "off") + "</div>" +
          "<div>" + field(prefix + "-account", "Account number", "account_number", "", "off") + "</div>";
      } else {
        box.innerHTML = "<div>" + field(prefix + "-number", "Card number", "number", "4111 1111 1111 1111", "cc-number") + "</div>" +
          "<div>" + field(prefix + "-exp", "Expiration (MM/YY)", "expiry", "MM/YY", "cc-exp") + "</div>" +
          "<div>" + field(prefix + "-cvv", "CVV", "cvc", "CVV", "cc-csc") + "</div>" +
          "<div>" + field(prefix + "-zip", "Postal code", "postal_code", "ZIP", "postal-code") + "</div>";
      }
      box.querySelectorAll("input").forEach(function (input) {
        input.addEventListener("input", function () {
          var v = values();
          var ok = mode === "ach-key-enter" ? !!(v.routing_number && v.account_number)
            : !!(v.number && v.expiry && v.cvc && (v.postal_code || config.bypassPostalCodeValidation));
          emit("formValidityChanged", {validity: ok ? "true" : "false"});
        });
      });
    }

    render();
    return {
      on: function (name, cb) { (listeners[name] = listeners[name] || []).push(cb); },
      send: {
        setMode: function (newMode) {
          if (newMode !== "cc-key-enter" && newMode !== "ach-key-enter") throw new Error("paysimpleJs: unknown mode " + newMode);
          mode = newMode;
          render();
        },
        retrieveAccount: function (customer) {
          var v = values();
          var body = mode === "ach-key-enter"
            ? {mode: mode, routingNumber: v.routing_number, accountNumber: v.account_number, customer: customer || {}}
            : {mode: mode, cardNumber: (v.number || "").replace(/[\s-]+/g, ""), expiration: v.expiry, cvv: v.cvc,
               postalCode: v.postal_code, customer: customer || {}};
          fetch(origin + "/_fake/standin/paysimplejs/accounts", {
            method: "POST", headers: {"Content-Type": "application/json", "Authorization": "Bearer " + config.auth.token},
            body: JSON.stringify(body),
          }).then(function (response) {
            return response.json().then(function (data) {
              if (response.ok) emit("accountRetrieved", data);
              else emit("httpError", data);
            });
          }, function () {
            emit("httpError", {errorKey: "timeout", errors: [], status: 0});
          });
        },
      },
    };
  }

  window.paysimpleJs = paysimpleJs;
})();
