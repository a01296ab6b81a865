/* vault_wallets adapter: Caselle (@caselle/payment-sdk, "ZiftPaymentSDK").
 *
 * PROVISIONAL: Caselle does not publish the SDK's browser surface.  This adapter feeds it the
 * client config the server fetched (GET /api/paymentaccounts/{uid}/client-config) and expects
 * new ZiftPaymentSDK(clientConfig), sdk.mount(container), sdk.proxynize() → {fingerprint, last4,
 * exp_month, exp_year, bin, card_brand, holder_name}; see docs/processors/caselle.md.  The
 * result is packed into the one string the server's CaselleProcessor decodes ("cstk1." +
 * base64url JSON) and saved with POST /api/customers/{uid}/payment-methods, which swaps the
 * 15-minute fingerprint for a permanent token.
 */
(function () {
  "use strict";
  const FIELDS = ["fingerprint", "last4", "exp_month", "exp_year", "bin", "card_brand", "holder_name"];

  function browserToken(result) {
    const credit = {};
    FIELDS.forEach((key) => { if (result[key] !== undefined && result[key] !== null && result[key] !== "") credit[key] = result[key]; });
    ["exp_month", "exp_year"].forEach((key) => { if (credit[key] !== undefined) credit[key] = parseInt(credit[key], 10); });
    const json = JSON.stringify({payment_method_type: "credit", credit: credit});
    const base64 = btoa(String.fromCharCode(...new TextEncoder().encode(json)));
    return "cstk1." + base64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  VaultWallet.registerAdapter("caselle", {
    async mount(ctx) {
      await ctx.loadScript(ctx.session.sdk.url, ctx.session.sdk.integrity);
      if (typeof window.ZiftPaymentSDK !== "function") throw new ctx.VaultError(0, "Caselle's payment SDK did not load", "sdk_load_failed");
      ctx.caselle = new window.ZiftPaymentSDK(ctx.client);
      ctx.caselle.mount(ctx.fields.querySelector("[data-vault-hosted]"));
    },
    async tokenize(ctx) {
      if (ctx.session.expires_at && Date.parse(ctx.session.expires_at) < Date.now() + 30000) {
        await ctx.refreshSession();  // the temporary password lasts 10 minutes
        ctx.caselle = new window.ZiftPaymentSDK(ctx.client);
        ctx.caselle.mount(ctx.fields.querySelector("[data-vault-hosted]"));
        throw new ctx.VaultError(0, {error: {message: "The card form had expired; please enter the card again."}}, "session_expired");
      }
      try {
        return {token: browserToken(await ctx.caselle.proxynize())};
      } catch (err) {
        throw new ctx.VaultError(0, {error: {message: (err && err.message) || "Caselle could not save this card."}}, (err && err.code) || "processor_error");
      }
    },
    reset(ctx) { ctx.caselle.clear(); },
  });
})();
