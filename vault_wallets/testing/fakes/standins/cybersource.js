/* Stand-in for CyberSource Microform Integration v2 (served by vault_wallets.testing.fakes.cybersource
 * at the path the fake's capture contexts name in ctx[0].data.clientLibrary), for offline tests.
 *
 * Same surface as the real library per BROWSER-SDKS.md §3.3: a global Flex(captureContext) with
 * microform(options) or microform(paymentType, options); microform.createField('number' |
 * 'securityCode', {placeholder}) → field with load(containerOrSelector), on(type, listener),
 * off, clear, focus, dispose, update(options); events load, change ({card: [{name, brandedName,
 * cybsCardType}], valid, empty, couldBeValid}), focus, blur; microform.createToken({expirationMonth,
 * expirationYear}, callback(err, token)) with the transient token (a JWT string) as the SECOND
 * argument and errors {name: "MicroformError", reason, message, details: [{location, message}]}.
 * Differences, on purpose: the fields are plain inputs (the real ones are iframes from
 * flex.cybersource.com), and createToken calls the fake's /_fake/standin/ route; the fake checks
 * the capture context and that this page's origin is in its targetOrigins, as CyberSource does.
 */
(function () {
  "use strict";

  function MicroformError(reason, message, details) {
    this.name = "MicroformError"; this.reason = reason; this.message = message; this.details = details || [];
  }

  function claims(jwt) {
    try {
      var part = String(jwt).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    } catch (e) { throw new MicroformError("CAPTURE_CONTEXT_INVALID", "The capture context is not a JWT."); }
  }

  var BRANDS = [[/^4/, "visa", "Visa", "001"], [/^(5[1-5]|2[2-7])/, "mastercard", "Mastercard", "002"],
    [/^3[47]/, "amex", "American Express", "003"], [/^6(011|5)/, "discover", "Discover", "004"]];

  function Field(type, options) {
    var listeners = {};
    var input = document.createElement("input");
    input.setAttribute("data-standin", type === "number" ? "number" : "cvc");
    input.setAttribute("aria-label", type === "number" ? "Card number" : "Security code");
    input.autocomplete = type === "number" ? "cc-number" : "cc-csc";
    input.inputMode = "numeric";
    input.style.cssText = "border:0;outline:0;width:100%;font:inherit;background:transparent;padding:.45rem 0";
    var self = this;
    function emit(name, payload) { (listeners[name] || []).forEach(function (l) { l(payload); }); }
    this.type = type;
    this.update = function (opts) { if (opts && opts.placeholder !== undefined) input.placeholder = opts.placeholder; };
    this.update(options || {});
    this.load = function (target) {
      var container = typeof target === "string" ? document.querySelector(target) : target;
      if (!container) throw new MicroformError("FIELD_LOAD_CONTAINER_SELECTOR", "The container was not found.");
      container.textContent = "";
      container.appendChild(input);
      setTimeout(function () { emit("load", {}); }, 0);
    };
    this.on = function (name, l) { (listeners[name] = listeners[name] || []).push(l); };
    this.off = function (name, l) { listeners[name] = (listeners[name] || []).filter(function (x) { return x !== l; }); };
    this.clear = function () { input.value = ""; };
    this.focus = function () { input.focus(); };
    this.dispose = function () { input.remove(); listeners = {}; };
    this.value = function () { return input.value.replace(/[\s-]+/g, ""); };
    input.addEventListener("focus", function () { emit("focus", {}); });
    input.addEventListener("blur", function () { emit("blur", {}); });
    input.addEventListener("input", function () {
      var v = self.value();
      var cards = type === "number" ? BRANDS.filter(function (b) { return b[0].test(v); })
        .map(function (b) { return {name: b[1], brandedName: b[2], cybsCardType: b[3]}; }) : [];
      emit("change", {card: cards, valid: type === "number" ? v.length >= 13 : v.length >= 3, empty: !v, couldBeValid: true});
    });
  }

  function Microform(captureContext, api) {
    var fields = {};
    this.createField = function (type, options) {
      if (type !== "number" && type !== "securityCode") throw new MicroformError("CREATE_FIELD_INVALID_FIELD_TYPE", "Unknown field type.");
      fields[type] = new Field(type, options);
      return fields[type];
    };
    this.createToken = function (options, callback) {
      options = options || {};
      if (!fields.number) return callback(new MicroformError("CREATE_TOKEN_NO_FIELDS_LOADED", "No number field."));
      fetch(api + "/_fake/standin/flex/v2/tokens", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({captureContext: captureContext, number: fields.number.value(),
          securityCode: fields.securityCode ? fields.securityCode.value() : "",
          expirationMonth: options.expirationMonth, expirationYear: options.expirationYear}),
      }).then(function (response) {
        return response.json().then(function (data) {
          if (response.ok) callback(null, data.token);
          else callback(new MicroformError(data.reason, data.message, data.details));
        });
      }, function () { callback(new MicroformError("CREATE_TOKEN_TIMEOUT", "The request timed out.")); });
    };
  }

  function Flex(captureContext) {
    var payload = claims(captureContext);
    var api = (payload.flx && payload.flx.origin) || new URL(document.currentScript ? document.currentScript.src : location.href).origin;
    this.microform = function (typeOrOptions) { return new Microform(captureContext, api); };
  }

  window.Flex = Flex;
})();
