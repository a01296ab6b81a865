/* vault_wallets checkout helper: save, list, choose and remove saved payment methods.
 *
 *   const wallet = new VaultWallet(JSON.parse(document.getElementById("vault-wallet-config").textContent));
 *   const token = await wallet.tokenizeCard({number, exp_month, exp_year, cvc});  // sandbox / fakes only
 *   const method = await wallet.save(token, {label: "Work", makeDefault: true});
 *
 * Requests use the shopper's session and send Django's CSRF token; the card number goes only to
 * the processor's tokenizer, never to the shop's server.
 */
(function (global) {
  "use strict";

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  class VaultError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || ("HTTP " + status));
      this.status = status;
      this.code = error.code || "error";
      this.fields = error.fields || {};
    }
  }

  async function request(method, url, body, extraHeaders) {
    const headers = Object.assign({"Accept": "application/json"}, extraHeaders || {});
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method: method, headers: headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new VaultError(response.status, data);
    return data;
  }

  class VaultWallet {
    constructor(config) { this.config = config; }

    tokenizerUrl() { return this.config.sandboxTokenizerUrl || this.config.fakeTokenizerUrl; }

    /* The sandbox's (or a fake's) stand-in for a processor's browser tokenizer. */
    async tokenizeCard(card) {
      const url = this.tokenizerUrl();
      if (!url) throw new Error("this processor tokenizes with its own browser library");
      const cross = !url.startsWith("/");
      const response = await fetch(url, {
        method: "POST", headers: {"Content-Type": "application/json"},
        credentials: cross ? "omit" : "same-origin", body: JSON.stringify(card),
      });
      const data = await response.json().catch(() => null);
      if (!response.ok) throw new VaultError(response.status, data && data.error && typeof data.error === "object"
        ? data : {error: {message: data && data.error}});
      return data.token;
    }

    list() { return request("GET", this.config.paymentMethodsUrl).then((d) => d.results); }

    save(temporaryToken, options) {
      options = options || {};
      return request("POST", this.config.paymentMethodsUrl,
        {token: temporaryToken, label: options.label || "", make_default: !!options.makeDefault},
        {"X-CSRFToken": csrfToken()});
    }

    setDefault(id) {
      return request("PUT", this.config.defaultPaymentMethodUrl, {saved_payment_method_id: id},
        {"X-CSRFToken": csrfToken()});
    }

    remove(id) {
      return request("DELETE", this.config.paymentMethodsUrl + encodeURIComponent(id) + "/", undefined,
        {"X-CSRFToken": csrfToken()});
    }

    customerToken() {
      return request("POST", this.config.customerTokenUrl, {}, {"X-CSRFToken": csrfToken()});
    }
  }

  global.VaultWallet = VaultWallet;
  global.VaultWalletError = VaultError;
})(window);
