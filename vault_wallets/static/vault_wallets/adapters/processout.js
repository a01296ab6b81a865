/* vault_wallets adapter: ProcessOut (ProcessOut.js hosted fields).
 *
 * setupForm() on the tag's form (its data-processout-input containers), then on save:
 * - by default tokenize() → card_… , which the server turns into a customer token
 *   (POST /customers/{id}/tokens with source);
 * - with the account's VERIFY_TOKENS, makeCardToken() completes the pending customer token the
 *   server created for this checkout (seed 001 step 3) → tok_…, which the server reads back.
 *   A pending token is single-use: the adapter asks for a new one for the next card.
 */
(function () {
  "use strict";

  const MESSAGES = {
    "card.invalid-number": "The card number is not valid.", "card.invalid-date": "The expiry date is not valid.",
    "card.invalid-month": "The expiry month is not valid.", "card.invalid-year": "The expiry year is not valid.",
    "card.invalid-cvc": "The security code is not valid.", "card.expired": "This card has expired.",
    "card.declined": "The card was declined.", "processout-js.network-issue": "ProcessOut could not be reached. Try again.",
  };

  function vaultError(ctx, err) {
    const code = (err && err.code) || "processor_error";
    return new ctx.VaultError(0, {error: {message: MESSAGES[code] || (err && err.message) || "ProcessOut could not save this card."}}, code);
  }

  VaultWallet.registerAdapter("processout", {
    async mount(ctx) {
      await ctx.loadScript(ctx.session.sdk.url, ctx.session.sdk.integrity);
      if (!window.ProcessOut) throw new ctx.VaultError(0, "ProcessOut.js did not load", "sdk_load_failed");
      ctx.processout = new window.ProcessOut.ProcessOut(ctx.client.projectId);
      ctx.cardForm = await new Promise((resolve, reject) => {
        ctx.processout.setupForm(ctx.form, {requireCVC: true, style: {fontSize: "16px"}},
          resolve, (err) => reject(vaultError(ctx, err)));
      });
    },
    async tokenize(ctx) {
      if (!ctx.client.customerTokenId) {
        return new Promise((resolve, reject) => ctx.processout.tokenize(ctx.cardForm, {},
          (cardId) => resolve({token: cardId}), (err) => reject(vaultError(ctx, err))));
      }
      if (ctx.usedCustomerToken) await ctx.refreshSession();
      const tokenId = ctx.client.customerTokenId;
      ctx.usedCustomerToken = true;
      return new Promise((resolve, reject) => ctx.processout.makeCardToken(ctx.cardForm, ctx.client.customerId, tokenId,
        {verify: true}, (customerTokenId) => resolve({token: customerTokenId}), (err) => reject(vaultError(ctx, err))));
    },
    reset(ctx) {
      ctx.form.querySelectorAll("[data-processout-input] input").forEach((input) => { input.value = ""; });
    },
  });
})();
