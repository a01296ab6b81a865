/* Stand-in for Caselle's payment SDK (@caselle/payment-sdk, "ZiftPaymentSDK"), served by
 * vault_wallets.testing.fakes.caselle, for offline tests.
 *
 * PROVISIONAL, INVENTED SURFACE: Caselle documents that its SDK takes the client config
 * (GET /api/paymentaccounts/{uid}/client-config) and "proxynizes" the card into a ~15-minute token
 * (the fingerprint), but not the SDK's constructor, methods, events or result shape
 * (BROWSER-SDKS.md §5.3).  This stand-in implements the surface vault_wallets' adapter expects:
 *   const sdk = new ZiftPaymentSDK({processor, config: {account_id, api_key, temporary_password,
 *                                   expiration_date}, supportedMethods});
 *   sdk.mount(containerElement);            // draws the card fields
 *   sdk.proxynize() → Promise<{fingerprint, last4, exp_month, exp_year, bin, card_brand, holder_name}>
 *   (rejects with {code, message});  sdk.clear();
 * Replace the adapter's calls when Caselle publishes the real SDK reference.
 */
(function () {
  "use strict";
  var current = document.currentScript;
  var origin = new URL(current ? current.src : location.href).origin;

  function input(name, label, placeholder, autocomplete, wide) {
    return '<div style="' + (wide ? "grid-column:1/-1" : "") + '"><label style="display:block;font-size:.9rem;margin:.3rem 0 .1rem">' + label +
      '<input data-standin="' + name + '" placeholder="' + placeholder + '" autocomplete="' + autocomplete +
      '" style="display:block;margin-top:.15rem;padding:.45rem;border:1px solid #bbb;border-radius:5px;font:inherit;width:100%;box-sizing:border-box"></label></div>';
  }

  function ZiftPaymentSDK(clientConfig) {
    var config = (clientConfig && clientConfig.config) || {};
    if (!config.temporary_password) throw new Error("ZiftPaymentSDK: a client config is required");
    var root = null;
    this.mount = function (container) {
      root = container;
      root.innerHTML = '<div class="caselle-sdk-standin" style="display:grid;grid-template-columns:2fr 1fr 1fr 1fr;gap:.6rem;align-items:end">' +
        input("holder_name", "Name on card", "", "cc-name", true) +
        input("number", "Card number", "4242 4242 4242 4242", "cc-number") + input("exp_month", "Month", "MM", "cc-exp-month") +
        input("exp_year", "Year", "YYYY", "cc-exp-year") + input("cvc", "CVC", "CVC", "cc-csc") + "</div>";
    };
    this.clear = function () { if (root) root.querySelectorAll("[data-standin]").forEach(function (el) { el.value = ""; }); };
    this.proxynize = function () {
      if (!root) return Promise.reject({code: "not_mounted", message: "mount() first"});
      var v = {};
      root.querySelectorAll("[data-standin]").forEach(function (el) { v[el.dataset.standin] = el.value.trim(); });
      return fetch(origin + "/_fake/standin/caselle/proxynize", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({account_id: config.account_id, api_key: config.api_key, temporary_password: config.temporary_password,
          number: (v.number || "").replace(/[\s-]+/g, ""), exp_month: parseInt(v.exp_month, 10) || 0,
          exp_year: parseInt(v.exp_year, 10) || 0, cvc: v.cvc, holder_name: v.holder_name}),
      }).then(function (response) {
        return response.json().then(function (data) { if (!response.ok) throw data; return data; });
      }, function () { throw {code: "network_error", message: "The payment service could not be reached."}; });
    };
  }

  window.ZiftPaymentSDK = ZiftPaymentSDK;
})();
