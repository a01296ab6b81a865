/* Stand-in for ExactJS (served by vault_wallets.testing.fakes.exact at /js/v1/exact.js), for offline tests.
 *
 * Same surface as the real library per BROWSER-SDKS.md §4.3 (exact-payments/next-merchant-demo
 * tokenize-from-browser/types.ts): a global ExactJS(accessToken, {locale}?) → exact with
 * components({orderId}) → components.addCard(elementId, {style, label: {position}, wallets,
 * billingAddress: {type}}) and addComponent(elementId, 'address', options); exact.tokenize(),
 * exact.payOrder() (a Promise of the payment id — not played by the stand-in: it rejects),
 * exact.reset() and exact.on(event, handler) with "payment-complete" {token, card_brand, last4,
 * expiry_month, expiry_year} and "payment-failed" {messages: [...]}.  Differences, on purpose:
 * the card component is plain inputs (the real one is Exact's iframe) and it calls the fake's
 * /_fake/standin/ route with the order's access token.
 */
(function () {
  "use strict";
  var current = document.currentScript;
  var origin = new URL(current ? current.src : location.href).origin;

  function input(name, label, placeholder, autocomplete, position) {
    var id = "exactjs-standin-" + name;
    var text = position === "none" ? "" : '<label for="' + id + '" style="display:block;font-size:.9rem;margin:.3rem 0 .1rem">' + label + "</label>";
    return "<div>" + text + '<input id="' + id + '" data-standin="' + name + '" placeholder="' + placeholder +
      '" autocomplete="' + autocomplete + '" aria-label="' + label + '" style="padding:.45rem;border:1px solid #bbb;border-radius:5px;font:inherit;width:100%;box-sizing:border-box"></div>';
  }

  function ExactJS(accessToken, options) {
    if (!accessToken) throw new Error("ExactJS: an access token is required");
    var listeners = {};
    var orderId = null;
    var root = null;
    function emit(name, payload) { (listeners[name] || []).forEach(function (h) { h(payload); }); }
    var exact = {
      components: function (opts) {
        orderId = opts && opts.orderId;
        if (!orderId) throw new Error("ExactJS: components({orderId}) needs the order id");
        return {
          addCard: function (elementId, cardOptions) {
            cardOptions = cardOptions || {};
            var position = (cardOptions.label && cardOptions.label.position) || "above";
            root = document.getElementById(elementId);
            if (!root) throw new Error("ExactJS: no element #" + elementId);
            var billing = cardOptions.billingAddress && cardOptions.billingAddress.type;
            root.innerHTML = '<div class="exactjs-standin" style="display:grid;grid-template-columns:2fr 1fr 1fr' + (billing ? " 1fr" : "") + ';gap:.6rem;align-items:end">' +
              input("number", "Card number", "4111 1111 1111 1111", "cc-number", position) +
              input("expiry", "Expiry (MM/YY)", "MM/YY", "cc-exp", position) +
              input("cvc", "CVC", "CVC", "cc-csc", position) +
              (billing ? input("postal_code", "Postal code", "ZIP", "postal-code", position) : "") + "</div>";
          },
          addComponent: function (elementId, type) {
            if (type !== "address") throw new Error("ExactJS stand-in: only the address component");
            var el = document.getElementById(elementId);
            el.innerHTML = input("address_line1", "Address", "", "address-line1", "above") + input("postal_code", "Postal code", "", "postal-code", "above");
          },
        };
      },
      on: function (name, handler) { (listeners[name] = listeners[name] || []).push(handler); },
      tokenize: function () {
        if (!root) throw new Error("ExactJS: addCard first");
        var v = {};
        root.querySelectorAll("[data-standin]").forEach(function (el) { v[el.dataset.standin] = el.value.trim(); });
        var parts = (v.expiry || "").split("/");
        var year = parseInt(parts[1], 10);
        fetch(origin + "/_fake/standin/exact/tokenize", {
          method: "POST", headers: {"Content-Type": "application/json", "Authorization": "Bearer " + accessToken},
          body: JSON.stringify({orderId: orderId, number: (v.number || "").replace(/[\s-]+/g, ""),
            expiry: (parts[0] || "") + "/" + (year < 100 ? 2000 + year : year), cvc: v.cvc, postalCode: v.postal_code}),
        }).then(function (response) {
          return response.json().then(function (data) {
            if (response.ok) emit("payment-complete", data);
            else emit("payment-failed", data);
          });
        }, function () { emit("payment-failed", {messages: ["Network error"]}); });
      },
      payOrder: function () { return Promise.reject(new Error("ExactJS stand-in: payOrder is not played")); },
      reset: function () { if (root) root.querySelectorAll("[data-standin]").forEach(function (el) { el.value = ""; }); },
    };
    return exact;
  }

  window.ExactJS = ExactJS;
})();
