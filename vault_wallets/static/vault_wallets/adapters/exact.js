/* vault_wallets adapter: Exact Payments (ExactJS).
 *
 * The server creates an Order for this checkout (POST /account/{accountId}/orders) and hands the
 * page only its id and 15-minute access token.  ExactJS draws the card component into the tag's
 * container; exact.tokenize() answers through the "payment-complete" event with
 * {token, card_brand, last4, expiry_month, expiry_year}; the server links the token to the
 * shopper's Exact customer (POST /customer/{id}/payment-method).
 */
(function () {
  "use strict";

  function messages(payload) {
    if (Array.isArray(payload)) return payload.join(" ");           // the 2023 demo's shape
    if (payload && Array.isArray(payload.messages)) return payload.messages.join(" ");  // the 2025 demo's
    return "Exact could not save this card.";
  }

  VaultWallet.registerAdapter("exact", {
    async mount(ctx) {
      await ctx.loadScript(ctx.session.sdk.url, ctx.session.sdk.integrity);
      if (typeof window.ExactJS !== "function") throw new ctx.VaultError(0, "ExactJS did not load", "sdk_load_failed");
      const container = ctx.fields.querySelector("[data-vault-hosted]");
      ctx.exact = window.ExactJS(ctx.client.accessToken, {locale: document.documentElement.lang || "en"});
      ctx.exact.components({orderId: ctx.client.orderId}).addCard(container.id, {
        label: {position: "above"}, billingAddress: {type: "minimal"}, wallets: false,
        style: {default: {fontSize: "16px", padding: "8px", borderRadius: "5px", borderColor: "#bbb"}, error: {borderColor: "#b00020"}},
      });
      ctx.exact.on("payment-complete", (payload) => { if (ctx.pending) ctx.pending.resolve(payload); });
      ctx.exact.on("payment-failed", (payload) => {
        if (ctx.pending) ctx.pending.reject(new ctx.VaultError(0, {error: {message: messages(payload)}}, "payment_failed"));
      });
    },
    tokenize(ctx) {
      return new Promise((resolve, reject) => {
        ctx.pending = {
          resolve: (payload) => { ctx.pending = null; resolve({token: payload.token}); },
          reject: (error) => { ctx.pending = null; reject(error); },
        };
        ctx.exact.tokenize();
      });
    },
    /* A fresh order (and access token) for the next card: reset() unmounts ExactJS's component. */
    async reset(ctx) {
      ctx.exact.reset();
      await ctx.refreshSession();
      await VaultWallet.adapter("exact").mount(ctx);
    },
  });
})();
