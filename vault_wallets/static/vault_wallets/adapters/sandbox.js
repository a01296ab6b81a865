/* vault_wallets adapter: the embedded sandbox processor.
 *
 * The sandbox has no hosted fields: its tokenizer is the app's own POST /wallet/sandbox/tokens/
 * (it plays the processor's servers).  The inputs rendered by add_card/sandbox.html have no
 * name attribute, so the card number is never part of a form submission to the shop.
 */
(function () {
  "use strict";
  VaultWallet.registerAdapter("sandbox", {
    async mount(ctx) {
      if (!ctx.config.sandboxTokenizerUrl) throw new ctx.VaultError(0, "the sandbox tokenizer is not mounted", "sdk_missing");
    },
    async tokenize(ctx) {
      const value = (name) => (ctx.input(name) ? ctx.input(name).value.trim() : "");
      const response = await fetch(ctx.config.sandboxTokenizerUrl, {
        method: "POST", credentials: "omit", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({
          number: value("number").replace(/[\s-]+/g, ""), exp_month: parseInt(value("exp_month"), 10) || 0,
          exp_year: parseInt(value("exp_year"), 10) || 0, cvc: value("cvc"),
        }),
      });
      const data = await response.json().catch(() => null);
      if (!response.ok) throw new ctx.VaultError(response.status, data);
      return {token: data.token};
    },
    reset(ctx) {
      ["number", "exp_month", "exp_year", "cvc"].forEach((name) => { if (ctx.input(name)) ctx.input(name).value = ""; });
    },
  });
})();
