/* vault_wallets checkout: one JavaScript API over each processor's own browser library.
 *
 * The three template tags set everything up; a shop that wants more control uses the API:
 *
 *   const wallet = VaultWallet.current;                  // made by {% vault_wallet_script %}
 *   wallet.on("saved", (method) => ...);                 // {id, brand, last4, ...} from the API
 *   wallet.on("error", (error) => ...);                  // VaultWalletError {code, message, fields}
 *   await wallet.mount(formElement);                     // draw the processor's fields
 *   const method = await wallet.save({nickname: "Work", makeDefault: true});
 *   await wallet.setDefault(method.id);  await wallet.remove(method.id);  await wallet.list();
 *
 * The card number goes only to the processor's library (its iframe or tokenizer), never to the
 * shop's server: the shop receives the library's result (a token, an account id) and saves it
 * through POST {paymentMethodsUrl} with the shopper's session and Django's CSRF token.
 * Each processor's adapter (static/vault_wallets/adapters/<name>.js) registers itself with
 * VaultWallet.registerAdapter(name, {mount(ctx), tokenize(ctx)}).
 */
(function (global) {
  "use strict";

  const adapters = {};

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  class VaultError extends Error {
    constructor(status, body, code) {
      const error = (body && body.error) || {};
      super(error.message || (typeof body === "string" ? body : "") || ("HTTP " + status));
      this.status = status;
      this.code = code || error.code || "error";
      this.fields = error.fields || {};
    }

    /* One readable sentence for the shopper (field messages first). */
    get readable() {
      const fields = Object.values(this.fields || {}).flat().filter(Boolean);
      return fields.length ? fields.join(" ") : this.message;
    }
  }

  async function request(method, url, body) {
    const headers = {"Accept": "application/json"};
    if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method: method, headers: headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new VaultError(response.status, data);
    return data;
  }

  const scripts = {};

  /* Load a script once; with SRI (and CORS) when an integrity hash is known. */
  function loadScript(url, integrity) {
    if (!url) return Promise.reject(new VaultError(0, "this processor's browser library has no URL", "sdk_missing"));
    if (scripts[url]) return scripts[url];
    scripts[url] = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = url;
      script.async = true;
      if (integrity) { script.integrity = integrity; script.crossOrigin = "anonymous"; }
      script.onload = () => resolve();
      script.onerror = () => { delete scripts[url]; reject(new VaultError(0, "The payment form could not be loaded. Check your connection and reload the page.", "sdk_load_failed")); };
      document.head.appendChild(script);
    });
    return scripts[url];
  }

  class VaultWallet {
    constructor(config) {
      this.config = config || {};
      this.listeners = {};
      this.session = null;
      this.form = null;
      this.adapter = adapters[this.config.processor];
    }

    static registerAdapter(name, adapter) { adapters[name] = adapter; }
    static adapter(name) { return adapters[name]; }

    on(event, listener) { (this.listeners[event] = this.listeners[event] || []).push(listener); return this; }
    off(event, listener) { this.listeners[event] = (this.listeners[event] || []).filter((l) => l !== listener); return this; }

    emit(event, detail) {
      (this.listeners[event] || []).slice().forEach((listener) => {
        try { listener(detail); } catch (err) { console.error(err); }  // eslint-disable-line no-console
      });
      document.dispatchEvent(new CustomEvent("vault-wallet:" + event, {detail: detail}));
    }

    fail(error) {
      const err = error instanceof VaultError ? error
        : new VaultError(0, {error: {message: (error && error.message) || String(error)}}, (error && error.code) || "error");
      this.emit("error", err);
      return err;
    }

    /* Ask the shop's server for what the processor's library needs, load it, draw its fields. */
    async mount(form) {
      form = typeof form === "string" ? document.querySelector(form) : (form || document.querySelector("[data-vault-add-card]"));
      if (!form) throw new Error("VaultWallet.mount: no add-card form");
      if (!this.adapter) throw this.fail(new VaultError(0, "no adapter for processor " + this.config.processor, "adapter_missing"));
      this.form = form;
      const fields = form.querySelector("[data-vault-fields]") || form;
      try {
        this.session = await request("POST", this.config.checkoutSessionUrl, {});
        this.ctx = {
          wallet: this, form: form, fields: fields, config: this.config, session: this.session,
          client: this.session.client || {}, loadScript: loadScript, VaultError: VaultError,
          input: (name) => form.querySelector("[data-vault-input='" + name + "']"),
          /* A new session (for single-use values such as a pending customer token). */
          refreshSession: async () => {
            this.session = this.ctx.session = await request("POST", this.config.checkoutSessionUrl, {});
            this.ctx.client = this.session.client || {};
            this.ctx.usedCustomerToken = false;
            return this.session;
          },
        };
        await this.adapter.mount(this.ctx);
      } catch (err) {
        throw this.fail(err);
      } finally {
        fields.setAttribute("aria-busy", "false");
      }
      return this;
    }

    /* Tokenize with the processor's library, then save the result for the logged-in shopper. */
    async save(options) {
      options = options || {};
      if (!this.ctx) throw this.fail(new VaultError(0, "the card form is not ready yet", "not_mounted"));
      let result;
      try {
        result = await this.adapter.tokenize(this.ctx, options);
        const method = await request("POST", this.config.paymentMethodsUrl, {
          token: result.token, label: options.nickname || options.label || "", make_default: !!options.makeDefault,
        });
        this.emit("saved", method);
        if (this.adapter.reset) await this.adapter.reset(this.ctx);
        return method;
      } catch (err) {
        throw this.fail(err);
      }
    }

    list() { return request("GET", this.config.paymentMethodsUrl).then((d) => d.results); }

    /* A short-lived vault_wallets customer token (Bearer) for the logged-in shopper. */
    customerToken() { return request("POST", this.config.customerTokenUrl, {}); }

    async setDefault(id) {
      try {
        const method = await request("PUT", this.config.defaultPaymentMethodUrl, {saved_payment_method_id: id});
        this.emit("default", method);
        return method;
      } catch (err) { throw this.fail(err); }
    }

    async remove(id) {
      try {
        await request("DELETE", this.config.paymentMethodsUrl + encodeURIComponent(id) + "/");
        this.emit("removed", {id: id});
      } catch (err) { throw this.fail(err); }
    }

    /* Re-render every {% vault_saved_methods %} on the page from the server (same template). */
    async refreshSavedMethods(message) {
      const blocks = document.querySelectorAll("[data-vault-saved-methods]");
      for (const block of blocks) {
        const radio = block.querySelector("input[type=radio]");
        const field = radio ? radio.name : (block.dataset.fieldName || "saved_payment_method");
        const url = (block.dataset.fragmentUrl || this.config.savedMethodsUrl) + "?field=" + encodeURIComponent(field)
          + "&next=" + encodeURIComponent(location.pathname + location.search);
        const response = await fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}});
        if (!response.ok) continue;
        const holder = document.createElement("div");
        holder.innerHTML = await response.text();
        const fresh = holder.querySelector("[data-vault-saved-methods]");
        if (!fresh) continue;
        fresh.dataset.fieldName = field;
        block.replaceWith(fresh);
        const status = fresh.querySelector("[data-vault-status]");
        if (status && message) status.textContent = message;
      }
    }

    /* Wire the markup of the three tags (called by VaultWallet.auto()). */
    wire() {
      document.addEventListener("click", (event) => {
        const button = event.target.closest("[data-vault-saved-methods] [data-vault-action]");
        if (!button) return;
        event.preventDefault();
        const item = button.closest("[data-vault-method]");
        const id = item.dataset.vaultMethod;
        const name = item.dataset.vaultName;
        if (button.dataset.vaultAction === "remove") {
          confirmRemoval(name).then((yes) => {
            if (!yes) return button.focus();
            return this.remove(id).then(() => this.refreshSavedMethods(name + " was removed."))
              .catch((err) => announce(item, err.readable || err.message));
          });
        } else if (button.dataset.vaultAction === "make-default") {
          this.setDefault(id).then(() => this.refreshSavedMethods(name + " is now your default."))
            .catch((err) => announce(item, err.readable || err.message));
        }
      });
      const form = document.querySelector("[data-vault-add-card]");
      if (!form) return;
      form.querySelectorAll("[data-vault-js][hidden]").forEach((el) => { el.hidden = false; });
      const button = form.querySelector("[data-vault-save]");
      const errorBox = form.querySelector("[data-vault-error]");
      this.mount(form).then(() => { if (button) button.disabled = false; })
        .catch((err) => { if (errorBox) errorBox.textContent = err.readable || err.message; });
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        if (errorBox) errorBox.textContent = "";
        if (button) button.disabled = true;
        const nickname = form.querySelector("[name=nickname]");
        const makeDefault = form.querySelector("[name=make_default]");
        this.save({nickname: nickname ? nickname.value : "", makeDefault: makeDefault ? makeDefault.checked : false})
          .then((method) => {
            if (nickname) nickname.value = "";
            if (makeDefault) makeDefault.checked = false;
            const name = describe(method);
            return this.refreshSavedMethods(name + " was saved" + (method.is_default ? " as your default." : "."));
          })
          .catch((err) => { if (errorBox) errorBox.textContent = err.readable || err.message; })
          .finally(() => { if (button) button.disabled = false; });
      });
    }

    static auto() {
      const node = document.getElementById("vault-wallet-config");
      if (!node || VaultWallet.current) return VaultWallet.current;
      const wallet = new VaultWallet(JSON.parse(node.textContent));
      VaultWallet.current = wallet;
      wallet.wire();
      return wallet;
    }
  }

  function describe(method) {
    if (method.method_type === "ach") return (method.bank_name || "Bank") + " account ending " + method.last4;
    const brand = (method.brand || "card").replace(/_/g, " ").toLowerCase();
    const pretty = /^(amex|jcb)$/i.test(brand) ? brand.toUpperCase() : brand.replace(/\b\w/g, (c) => c.toUpperCase());
    return pretty + " ending " + method.last4;
  }

  function announce(item, message) {
    const block = item.closest("[data-vault-saved-methods]");
    const status = block && block.querySelector("[data-vault-status]");
    if (status) status.textContent = message;
  }

  /* An accessible confirmation (a modal <dialog>), resolved true when the shopper confirms. */
  function confirmRemoval(name) {
    return new Promise((resolve) => {
      const dialog = document.createElement("dialog");
      dialog.className = "vault-dialog";
      dialog.setAttribute("aria-labelledby", "vault-dialog-title");
      dialog.setAttribute("aria-describedby", "vault-dialog-text");
      const form = document.createElement("form");
      form.method = "dialog";
      const title = document.createElement("h2");
      title.id = "vault-dialog-title";
      title.textContent = "Remove " + name + "?";
      const text = document.createElement("p");
      text.id = "vault-dialog-text";
      text.textContent = "It will no longer be offered at checkout. You can add it again later.";
      const yes = document.createElement("button");
      yes.value = "remove";
      yes.className = "vault-button vault-button--danger";
      yes.textContent = "Remove";
      const no = document.createElement("button");
      no.value = "cancel";
      no.className = "vault-button vault-button--secondary";
      no.textContent = "Keep it";
      const actions = document.createElement("p");
      actions.className = "vault-dialog-actions";
      actions.append(yes, " ", no);
      form.append(title, text, actions);
      dialog.append(form);
      document.body.appendChild(dialog);
      dialog.addEventListener("close", () => { resolve(dialog.returnValue === "remove"); dialog.remove(); });
      dialog.showModal();
      no.focus();
    });
  }

  VaultWallet.Error = VaultError;
  VaultWallet.loadScript = loadScript;
  global.VaultWallet = VaultWallet;
  global.VaultWalletError = VaultError;

  /* Adapters load after this file (both deferred): wire up once the document is parsed. */
  if (document.readyState === "complete") setTimeout(() => VaultWallet.auto(), 0);
  else {
    document.addEventListener("DOMContentLoaded", () => VaultWallet.auto());
    global.addEventListener("load", () => VaultWallet.auto());
  }
})(window);
