/* vault_wallets adapter: PaySimple (PaySimpleJS, API v4).
 *
 * The server (POST checkout-session) gets the customer token of this shopper's PaySimple
 * customer; PaySimpleJS draws its iframe into the tag's container with auth.token, and
 * send.retrieveAccount() adds the card to that customer.  The accountRetrieved event's
 * account.id is what the page submits; the server checks the account belongs to the shopper's
 * PaySimple customer before keeping it.  The one-time paymentToken is not needed and not sent.
 */
(function () {
  "use strict";

  function readable(error) {
    const messages = (error && error.errors || []).map((e) => e.message).filter(Boolean);
    if (messages.length) return messages.join(" ");
    if (error && error.errorKey === "unauthorized") return "The payment form expired. Reload the page and try again.";
    if (error && error.errorKey === "timeout") return "PaySimple did not answer. Check your connection and try again.";
    return "PaySimple could not save this card.";
  }

  VaultWallet.registerAdapter("paysimple", {
    async mount(ctx) {
      await ctx.loadScript(ctx.session.sdk.url, ctx.session.sdk.integrity);
      if (typeof window.paysimpleJs !== "function") throw new ctx.VaultError(0, "PaySimpleJS did not load", "sdk_load_failed");
      const container = ctx.fields.querySelector("[data-vault-hosted]") || ctx.fields;
      container.textContent = "";
      ctx.paysimple = window.paysimpleJs({
        container: container, auth: {token: ctx.client.auth.token},
        bypassPostalCodeValidation: false, preventAutocomplete: false,
      });
      ctx.paysimple.send.setMode(ctx.client.mode || "cc-key-enter");
      ctx.paysimple.on("accountRetrieved", (payload) => { if (ctx.pending) ctx.pending.resolve(payload); });
      ctx.paysimple.on("httpError", (error) => {
        if (ctx.pending) ctx.pending.reject(new ctx.VaultError((error && error.status) || 0,
          {error: {message: readable(error)}}, (error && error.errorKey) || "processor_error"));
      });
    },
    tokenize(ctx) {
      return new Promise((resolve, reject) => {
        ctx.pending = {
          resolve: (payload) => { ctx.pending = null; resolve({token: String(payload.account.id)}); },
          reject: (error) => { ctx.pending = null; reject(error); },
        };
        ctx.paysimple.send.retrieveAccount(ctx.client.customer || {});
      });
    },
    reset(ctx) { ctx.paysimple.send.setMode(ctx.client.mode || "cc-key-enter"); },
  });
})();
