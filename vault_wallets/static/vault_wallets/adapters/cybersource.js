/* vault_wallets adapter: CyberSource (Microform Integration v2).
 *
 * The server creates a capture context for this page's origin (POST /microform/v2/sessions); the
 * library is loaded from the capture context's clientLibrary with its clientLibraryIntegrity.
 * Microform draws the card-number and security-code iframes; the expiry comes from the tag's own
 * inputs.  createToken() gives a transient token (15 minutes, one use), which the server turns
 * into a TMS payment instrument (zero-amount authorization with TOKEN_CREATE).
 */
(function () {
  "use strict";

  const REASONS = {
    CREATE_TOKEN_VALIDATION_FIELDS: "Check the card number and security code.",
    CREATE_TOKEN_VALIDATION_PARAMS: "Check the expiry month and year.",
    CREATE_TOKEN_TIMEOUT: "CyberSource did not answer. Try again.",
    CREATE_TOKEN_UNABLE_TO_START: "The payment form expired. Reload the page and try again.",
  };

  function readable(err) {
    const details = (err && err.details || []).map((d) => d.message).filter(Boolean);
    return (err && REASONS[err.reason]) || details.join(" ") || (err && err.message) || "CyberSource could not save this card.";
  }

  VaultWallet.registerAdapter("cybersource", {
    async mount(ctx) {
      await ctx.loadScript(ctx.session.sdk.url, ctx.session.sdk.integrity);
      if (typeof window.Flex !== "function") throw new ctx.VaultError(0, "Microform did not load", "sdk_load_failed");
      const flex = new window.Flex(ctx.client.captureContext);
      ctx.microform = flex.microform({styles: {input: {"font-size": "16px", color: "#222"}, ":focus": {color: "#000"},
        valid: {color: "#1d6b34"}, invalid: {color: "#b00020"}}});
      const loaded = [];
      for (const container of ctx.fields.querySelectorAll("[data-vault-microform]")) {
        const type = container.dataset.vaultMicroform;
        const field = ctx.microform.createField(type, {placeholder: type === "number" ? "4242 4242 4242 4242" : "CVC"});
        loaded.push(new Promise((resolve) => field.on("load", resolve)));
        field.load(container);
        ctx[type] = field;
      }
      await Promise.all(loaded);
    },
    tokenize(ctx) {
      const month = (ctx.input("exp_month") ? ctx.input("exp_month").value.trim() : "").padStart(2, "0");
      const year = ctx.input("exp_year") ? ctx.input("exp_year").value.trim() : "";
      return new Promise((resolve, reject) => {
        ctx.microform.createToken({expirationMonth: month, expirationYear: year}, (err, token) => {
          if (err) reject(new ctx.VaultError(0, {error: {message: readable(err)}}, err.reason || "processor_error"));
          else resolve({token: token});
        });
      });
    },
    reset(ctx) {
      if (ctx.number) ctx.number.clear();
      if (ctx.securityCode) ctx.securityCode.clear();
      ["exp_month", "exp_year"].forEach((name) => { if (ctx.input(name)) ctx.input(name).value = ""; });
    },
  });
})();
