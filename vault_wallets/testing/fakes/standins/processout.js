/* Stand-in for ProcessOut.js (served by vault_wallets.testing.fakes.processout), for offline tests.
 *
 * Same surface as the real library per BROWSER-SDKS.md §2.3-2.4 (processout/processout.js
 * src/processout/processout.ts, cardform.ts): a global ProcessOut.ProcessOut(projectId, resourceId?)
 * with setupForm(form, options?, onReady(cardForm), onError(err)), tokenize(cardForm|card, data,
 * success(cardId, card), error(err)) and makeCardToken(val, customerID, customerTokenID, options,
 * success(customerTokenID), error(err)) — ONE argument: BROWSER-SDKS.md §2.4 says
 * success(customerTokenID, data), but the official source (processout/processout.js
 * src/processout/processout.ts, handleCardActions) calls success(resourceID) only; a CardForm with getNumberField(), getExpiryField(),
 * getCVCField(), getExpiryMonthField(), getExpiryYearField(), validate(ok, err), tokenize(data, ok, err),
 * getElement(), on/addEventListener; fields with on(name, handler) ("input" carries card_iin and
 * card_number_length); errors {code, message}.  Differences, on purpose: fields are plain inputs in
 * the data-processout-input containers (the real library draws iframes from js.processout.com),
 * it does not insist on being loaded from *.processout.com, 3-D Secure customer actions are not
 * played (makeCardPayment is not provided), and it calls the fake's /_fake/standin/ routes.
 */
(function () {
  "use strict";
  var current = document.currentScript;
  var origin = new URL(current ? current.src : location.href).origin;
  var STANDIN = {"cc-number": "number", "cc-exp": "expiry", "cc-cvc": "cvc", "cc-exp-month": "exp_month", "cc-exp-year": "exp_year"};

  function PoException(code, message) { this.code = code; this.message = message || code; this.name = "ProcessOutException"; }
  PoException.prototype = Object.create(Error.prototype);

  function Field(container, kind, form) {
    var input = document.createElement("input");
    input.setAttribute("data-standin", STANDIN[kind]);
    input.setAttribute("aria-label", {"cc-number": "Card number", "cc-exp": "Expiry (MM / YY)", "cc-cvc": "Security code",
      "cc-exp-month": "Expiry month", "cc-exp-year": "Expiry year"}[kind]);
    input.placeholder = container.getAttribute("data-processout-placeholder") || "";
    input.autocomplete = {"cc-number": "cc-number", "cc-exp": "cc-exp", "cc-cvc": "cc-csc"}[kind] || "off";
    input.style.cssText = "border:0;outline:0;width:100%;font:inherit;background:transparent;padding:.45rem 0";
    container.textContent = "";
    container.appendChild(input);
    this.kind = kind;
    this.input = input;
    this.on = function (name, handler) {
      input.addEventListener(name, function (event) {
        if (name === "input" && kind === "cc-number") {
          var digits = input.value.replace(/\D/g, "");
          handler({card_iin: digits.slice(0, 6), card_number_length: digits.length, original: event});
        } else handler(event);
      });
    };
    this.value = function () { return input.value.trim(); };
  }

  function CardForm(form) {
    var fields = {};
    form.querySelectorAll("[data-processout-input]").forEach(function (container) {
      var kind = container.getAttribute("data-processout-input");
      if (STANDIN[kind]) fields[kind] = new Field(container, kind, form);
    });
    if (!fields["cc-number"]) throw new PoException("processout-js.missing-card-number", "The form has no cc-number field.");
    this.getElement = function () { return form; };
    this.getNumberField = function () { return fields["cc-number"]; };
    this.getExpiryField = function () { return fields["cc-exp"]; };
    this.getCVCField = function () { return fields["cc-cvc"]; };
    this.getExpiryMonthField = function () { return fields["cc-exp-month"]; };
    this.getExpiryYearField = function () { return fields["cc-exp-year"]; };
    this.on = this.addEventListener = function (name, handler) { form.addEventListener(name, handler); };
    this.values = function () {
      var month, year;
      if (fields["cc-exp"]) {
        var parts = fields["cc-exp"].value().split("/");
        month = parseInt(parts[0], 10); year = parseInt(parts[1], 10);
      } else {
        month = parseInt(fields["cc-exp-month"] ? fields["cc-exp-month"].value() : "", 10);
        year = parseInt(fields["cc-exp-year"] ? fields["cc-exp-year"].value() : "", 10);
      }
      return {number: fields["cc-number"].value().replace(/[\s-]+/g, ""), exp_month: month || 0,
        exp_year: year ? (year < 100 ? 2000 + year : year) : 0, cvc2: fields["cc-cvc"] ? fields["cc-cvc"].value() : ""};
    };
    this.validate = function (success, error) {
      var v = this.values();
      if (!/^\d{12,19}$/.test(v.number)) return error(new PoException("card.invalid-number", "The card number is invalid."));
      if (!(v.exp_month >= 1 && v.exp_month <= 12)) return error(new PoException("card.invalid-month", "The expiry month is invalid."));
      if (!v.exp_year) return error(new PoException("card.invalid-year", "The expiry year is invalid."));
      success();
    };
  }

  function ProcessOut(projectId, resourceId) {
    if (!projectId) throw new PoException("processout-js.missing-project-id", "A project ID is required.");
    if (resourceId && !/^(iv_|sub_|auth_req_)/.test(resourceId)) throw new PoException("processout-js.invalid-resource-id", "Invalid resource ID.");
    this.projectID = projectId;
    this.sandbox = projectId.indexOf("test-") === 0;
    var auth = "Basic " + btoa(projectId + ":");

    function call(method, path, body) {
      return fetch(origin + "/_fake/standin/processout" + path, {
        method: method, headers: {"Content-Type": "application/json", "Authorization": auth}, body: JSON.stringify(body),
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (!response.ok || data.success === false) throw new PoException(data.error_type || "processout-js.internal-server-error", data.message);
          return data;
        });
      }, function () { throw new PoException("processout-js.network-issue", "The network is unreachable."); });
    }

    function device() {
      return {request_origin: "web", app_screen_width: screen.width, app_screen_height: screen.height,
        app_color_depth: screen.colorDepth, app_language: navigator.language, app_timezone_offset: new Date().getTimezoneOffset(),
        app_java_enabled: false};
    }

    this.setupForm = function (form, options, onReady, onError) {
      if (typeof options === "function") { onError = onReady; onReady = options; options = {}; }
      try { var cardForm = new CardForm(form); setTimeout(function () { onReady(cardForm); }, 0); }
      catch (err) { if (onError) onError(err); else throw err; }
      return this;
    };

    this.tokenize = function (val, data, success, error) {
      data = data || {};
      if (typeof val.values !== "function") return error(new PoException("processout-js.invalid-type", "Pass a CardForm."));
      val.validate(function () {
        var v = val.values();
        call("POST", "/cards", Object.assign({}, v, {name: data.name || "", contact: data.contact || {},
          metadata: data.metadata || {}, device: device()}))
          .then(function (result) { success(result.card.id, result.card); }, error);
      }, error);
    };

    this.makeCardToken = function (val, customerID, customerTokenID, options, success, error) {
      var self = this;
      options = options || {};
      function withCard(cardId) {
        var body = {source: cardId, enable_three_d_s_2: true, device: device()};
        ["verify", "verify_metadata", "set_default", "preferred_scheme", "save_source"].forEach(function (key) {
          if (options[key] !== undefined) body[key] = options[key];
        });
        call("PUT", "/customers/" + encodeURIComponent(customerID) + "/tokens/" + encodeURIComponent(customerTokenID), body)
          .then(function (data) {
            if (data.customer_action) return error(new PoException("processout-js.wrong-type-for-action", "The stand-in does not play customer actions."));
            success(customerTokenID);  // the official library passes the token id only
          }, error);
      }
      if (typeof val === "string") return withCard(val);
      self.tokenize(val, {}, function (cardId) { withCard(cardId); }, error);
    };
  }

  window.ProcessOut = {ProcessOut: ProcessOut, Exception: PoException};
})();
