// The walhook console: a page of plain JavaScript over the /v1 API.
//
// No build step and no dependencies. Every page is a hash route
// (#/webhooks/<id>?status=failed), so a URL can be shared and reloaded. The
// bearer token is pasted once and kept in sessionStorage (no cookies, so no
// CSRF); the API's 401 forgets it and shows the prompt again. Data is put in
// the page with textContent only, never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "walhook.token";
  const main = document.getElementById("main");
  const flash = document.getElementById("flash");
  const forget = document.getElementById("forget-token");
  let refreshTimer = null;
  let generation = 0;

  // ---- small helpers -------------------------------------------------------

  // h("a", {href: "#/x", class: "c"}, "text", child, ...): an element.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (value === true) el.setAttribute(key, "");
      else el.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  // Put `nodes` in place of `el`'s children, skipping the absent ones.
  function fill(el, ...nodes) {
    el.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false));
    labelCells(el);
  }

  // Each cell names its column (data-label), for narrow windows where the
  // table's head is hidden and rows stack.
  function labelCells(root) {
    for (const table of root.querySelectorAll("table")) {
      const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
      for (const row of table.querySelectorAll("tbody tr")) {
        [...row.children].forEach((td, i) => { if (heads[i]) td.setAttribute("data-label", heads[i]); });
      }
    }
  }

  function show(...nodes) {
    fill(main, ...nodes);
  }

  function say(text, kind) {
    flash.textContent = text;
    flash.className = kind || "";
    if (text) setTimeout(() => { if (flash.textContent === text) say(""); }, 6000);
  }

  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  function field(label, input, hint) {
    const id = input.id;
    return h("div", { class: "field" },
      h("label", { for: id }, label), input,
      hint ? h("small", { id: id + "-hint" }, hint) : null);
  }

  function words(text) {
    return text.split(/[\s,]+/).map((w) => w.trim()).filter(Boolean);
  }

  function statusBadge(status) {
    return h("span", { class: "badge status-" + status }, status);
  }

  // The signature schemes a webhook may send, with what each is.
  const SCHEMES = [
    ["v1", "v1: HMAC-SHA256 with the webhook's secret"],
    ["v1a", "v1a: Ed25519 with walhook's signing key"],
    ["rfc9421", "RFC 9421 HTTP Message Signature (Ed25519, JWKS)"],
  ];

  // A webhook's endpoint health as a badge: healthy, failing or disabled.
  function healthBadge(health) {
    const kind = { healthy: "succeeded", failing: "failed", disabled: "disabled" }[health.state] || "pending";
    return h("span", { class: "badge health status-" + kind }, health.state);
  }

  // ---- the token and the API -----------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  class Unauthorized extends Error {}

  async function api(method, path, body) {
    const headers = { authorization: "Bearer " + token(), accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit",
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      prompt((data && data.message) || "the API refused the token");
      throw new Unauthorized();
    }
    if (!response.ok) {
      const details = (data && data.details || []).map((d) => d.param + ": " + d.msg).join("; ");
      const error = new Error((data && data.message || response.statusText) + (details ? " (" + details + ")" : ""));
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function prompt(refusal) {
    stopRefresh();
    forget.hidden = true;
    const input = h("input", {
      id: "token-input", type: "password", autocomplete: "off", required: true,
      "aria-describedby": "token-input-hint", spellcheck: "false",
    });
    const form = h("form", { id: "token-form", class: "card narrow" },
      h("h1", {}, "API token"),
      refusal ? h("p", { id: "token-error", class: "error", role: "alert" }, "Token refused: " + refusal) : null,
      field("Bearer token", input,
        "From `walhook api-tokens create --name NAME`. Kept in this tab only (sessionStorage)."),
      h("button", { type: "submit", id: "token-save" }, "Use token"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      route();
    });
    show(form);
    input.focus();
  }

  // ---- routing ---------------------------------------------------------------

  function here() {
    const raw = window.location.hash.replace(/^#/, "") || "/webhooks";
    const [path, query] = raw.split("?");
    return { parts: path.split("/").filter(Boolean), query: new URLSearchParams(query || "") };
  }

  function go(path) {
    window.location.hash = "#" + path;
  }

  function stopRefresh() {
    if (refreshTimer) clearInterval(refreshTimer);
    refreshTimer = null;
  }

  // Call `update` every 2 s while this page is shown.
  function every2s(update) {
    stopRefresh();
    const mine = generation;
    refreshTimer = setInterval(() => {
      if (mine !== generation || document.hidden) return;
      update().catch(failed);
    }, 2000);
  }

  function failed(error) {
    if (error instanceof Unauthorized) return;
    say(error.message, "error");
  }

  async function route() {
    // a token in the fragment (#token=..., as `walhook dev` prints) is taken once
    const fromUrl = window.location.hash.match(/^#token=([^&]+)/);
    if (fromUrl) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(fromUrl[1]));
      history.replaceState(null, "", window.location.pathname + "#/webhooks");
    }
    generation += 1;
    stopRefresh();
    if (!token()) return prompt();
    forget.hidden = false;
    const { parts, query } = here();
    for (const link of document.querySelectorAll("nav a")) {
      const current = ("#/" + parts[0]) === link.getAttribute("href");
      if (current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    show(h("p", { class: "loading" }, "Loading…"));
    try {
      if (parts[0] === "webhooks" && parts.length === 1) await webhooksPage(query);
      else if (parts[0] === "webhooks" && parts[1] === "new") await webhookForm(null);
      else if (parts[0] === "webhooks" && parts[2] === "edit") await webhookForm(parts[1]);
      else if (parts[0] === "webhooks") await webhookPage(parts[1], query);
      else if (parts[0] === "deliveries" && parts[1]) await deliveryPage(parts[1]);
      else if (parts[0] === "deliveries") await allDeliveriesPage(query);
      else if (parts[0] === "events" && parts[1]) await eventPage(parts[1]);
      else if (parts[0] === "events") await eventsPage(query);
      else if (parts[0] === "backfills") await backfillsPage();
      else if (parts[0] === "catalogue") await cataloguePage();
      else if (parts[0] === "health") await healthPage(query);
      else show(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/webhooks" }, "Webhooks")));
      // the page's data is in it: how long a page takes to be usable, for
      // anyone (and the browser test) to read in the performance timeline
      performance.mark("walhook:page-rendered", { detail: parts.join("/") });
      main.focus({ preventScroll: true });
    } catch (error) {
      if (error instanceof Unauthorized) return;
      show(h("h1", {}, "Error"), h("p", { class: "error", role: "alert" }, error.message));
    }
  }

  // ---- webhooks --------------------------------------------------------------

  async function webhooksPage(query) {
    const cursor = query.get("cursor");
    const page = await api("GET", "/v1/webhooks?limit=50" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    const rows = page.data.map((w) => h("tr", { "data-id": w.id },
      h("td", {}, h("a", { href: "#/webhooks/" + w.id }, w.name || w.id)),
      h("td", { class: "url" }, w.url),
      h("td", {}, w.events.join(" ")),
      h("td", {}, w.disabled ? h("span", { class: "badge status-failed" }, "disabled")
        : h("span", { class: "badge status-succeeded" }, "enabled")),
      h("td", { class: "health" }, healthBadge(w.health),
        w.health.state === "failing" ? " since " + when(w.health.failingSince) : null),
      h("td", { class: "last" }, "…")));
    show(
      h("div", { class: "title" }, h("h1", {}, "Webhooks"),
        h("a", { class: "button", id: "new-webhook", href: "#/webhooks/new" }, "New webhook")),
      page.data.length === 0 ? h("p", {}, "No webhooks yet.") :
        h("table", { id: "webhooks" },
          h("thead", {}, h("tr", {}, ["Name", "URL", "Events", "State", "Health", "Last delivery"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, rows)),
      page.nextCursor ? h("p", {}, h("a", { href: "#/webhooks?cursor=" + encodeURIComponent(page.nextCursor) }, "More webhooks →")) : null);
    // the last delivery of each, filled in as it comes
    await Promise.all(page.data.map(async (w, i) => {
      const last = await api("GET", "/v1/deliveries?limit=1&webhookId=" + w.id);
      const cell = rows[i].querySelector(".last");
      const d = last.data[0];
      cell.replaceChildren(d ? h("span", {}, statusBadge(d.status), " ", d.eventType, " ", when(d.createdAt)) : "none");
    }));
  }

  async function webhookForm(id) {
    const w = id ? await api("GET", "/v1/webhooks/" + id) : null;
    const input = (name, attrs) => h("input", Object.assign({ id: "wh-" + name, name }, attrs));
    const url = input("url", { type: "url", required: true, value: w ? w.url : "", placeholder: "https://receiver.example/hooks" });
    const events = input("events", { required: true, value: w ? w.events.join(" ") : "*" });
    const name = input("name", { value: w && w.name || "" });
    const description = h("textarea", { id: "wh-description", rows: 2 }, w && w.description || "");
    const disabled = input("disabled", { type: "checkbox", checked: !!(w && w.disabled) });
    const ordered = input("ordered", { type: "checkbox", checked: !!(w && w.ordered) });
    const envelope = h("select", { id: "wh-envelope" },
      ["none", "standard"].map((v) => h("option", { value: v, selected: w && w.envelope === v }, v)));
    const retry = input("retry", { value: w ? w.retrySchedule.join(" ") : "", placeholder: "5s 5min 30min 2h 5h 10h 10h" });
    const timeout = input("timeout", { type: "number", min: 1, max: 300000, value: w ? w.timeoutMs : "", placeholder: "3000" });
    const inflight = input("inflight", { type: "number", min: 1, max: 10000, value: w ? w.maxInFlight : "", placeholder: "32" });
    const headers = h("textarea", { id: "wh-headers", rows: 3, placeholder: "x-tenant: acme" },
      w ? Object.entries(w.headers).map(([k, v]) => k + ": " + v).join("\n") : "");
    const params = h("textarea", { id: "wh-query", rows: 2, placeholder: "key=value" },
      w ? Object.entries(w.queryParams).map(([k, v]) => k + "=" + v).join("\n") : "");
    const authType = h("select", { id: "wh-auth" },
      [["keep", "unchanged"], ["none", "none"], ["bearer", "bearer token"], ["basic", "basic"]]
        .filter(([v]) => id || v !== "keep")
        .map(([v, label]) => h("option", { value: v }, label)));
    const schemes = SCHEMES.map(([scheme]) => input("scheme-" + scheme, {
      type: "checkbox", value: scheme, checked: w ? w.signatureSchemes.includes(scheme) : true,
    }));
    const filter = input("filter", { value: w && w.filter || "", spellcheck: "false", placeholder: '$.new.status == "active"' });
    const rate = input("rate-limit", { type: "number", min: 0, step: "any", value: w && w.rateLimit !== null ? w.rateLimit : "", placeholder: "no limit" });
    const disableAfter = input("disable-after", { value: w ? w.disableAfter || "" : "5d" });
    const threshold = input("failure-threshold", { type: "number", min: 1, max: 10000, value: w ? w.failureThreshold : "", placeholder: "5" });
    const rateThreshold = input("failure-rate", { type: "number", min: 0.01, max: 1, step: "any", value: w ? w.failureRateThreshold : "", placeholder: "0.5" });
    const failWindow = input("failure-window", { value: w ? w.failureWindow : "", placeholder: "5min" });
    const minAttempts = input("failure-min-attempts", { type: "number", min: 1, value: w ? w.failureWindowMinAttempts : "", placeholder: "10" });
    const probe = input("probe-interval", { value: w ? w.probeInterval : "", placeholder: "30s" });
    const authToken = input("auth-token", { type: "password", autocomplete: "off" });
    const authUser = input("auth-username", { autocomplete: "off" });
    const authPassword = input("auth-password", { type: "password", autocomplete: "off" });
    const pick = h("select", { id: "wh-event-pick" }, h("option", { value: "" }, "Pick an event type…"));
    const add = h("button", { type: "button", id: "wh-event-add" }, "Add");
    add.addEventListener("click", () => {
      if (!pick.value) return;
      const now = words(events.value).filter((p) => p !== pick.value);
      events.value = now.concat([pick.value]).join(" ");
      events.focus();
    });
    api("GET", "/v1/catalogue").then((c) => {
      const types = [...new Set(c.data.map((e) => e.type))];
      const prefixes = [...new Set(types.map((t) => t.split(".")[0] + ".*"))];
      pick.append(...["*"].concat(prefixes, types).map((t) => h("option", { value: t }, t)));
    }).catch(failed);
    const form = h("form", { id: "webhook-form", class: "card" },
      h("h1", {}, w ? "Edit webhook" : "New webhook"),
      field("Receiver URL", url, "https; plain http only with allow_insecure_targets"),
      field("Events", events, "Patterns separated by spaces: an exact type, prefix.* or *"),
      h("div", { class: "field inline" }, h("label", { for: "wh-event-pick" }, "From the catalogue"), pick, add),
      field("Name", name), field("Description", description),
      h("fieldset", {}, h("legend", {}, "Delivery"),
        field("Retry schedule", retry, "Delays before each retry, e.g. 5s 5min 30min; empty keeps the current or default"),
        field("Timeout (ms)", timeout), field("Max in flight", inflight),
        field("Envelope", envelope),
        h("div", { class: "check" }, ordered, h("label", { for: "wh-ordered" }, "Ordered per apiresource")),
        h("div", { class: "check" }, disabled, h("label", { for: "wh-disabled" }, "Disabled"))),
      h("fieldset", { id: "wh-schemes" }, h("legend", {}, "Signatures"),
        SCHEMES.map(([scheme, label], i) => h("div", { class: "check" }, schemes[i],
          h("label", { for: "wh-scheme-" + scheme }, label)))),
      h("fieldset", {}, h("legend", {}, "Subscriber control"),
        field("Filter", filter, "A SQL/JSON path condition over new, old, changed, type and apiresource, e.g. " +
          '$.new.status == "suspended" or exists($.changed ? (@ == "email")); empty: every event'),
        field("Rate limit (deliveries/s)", rate, "Per walhook instance; empty: no limit"),
        field("Disable after failing for", disableAfter, "An interval such as 5d or 12h; empty: never"),
        field("Failing after consecutive failures", threshold),
        field("Or a failure rate of", rateThreshold, "A share of attempts, above 0 and at most 1"),
        field("Over a window of", failWindow, "From 1s to 1d"),
        field("With at least (attempts)", minAttempts),
        field("Probe every", probe, "While failing: one delivery is tried this often (doubling, at most 32 times)")),
      h("fieldset", {}, h("legend", {}, "Request"),
        field("Headers", headers, "One per line: name: value"),
        field("Query parameters", params, "One per line: key=value"),
        field("Authorization", authType, w ? "Currently " + w.auth.type : null),
        field("Bearer token", authToken), field("Basic user name", authUser), field("Basic password", authPassword)),
      h("p", { id: "form-error", class: "error", role: "alert" }),
      h("div", { class: "actions" },
        h("button", { type: "submit", id: "wh-save" }, w ? "Save" : "Create webhook"),
        h("a", { href: w ? "#/webhooks/" + w.id : "#/webhooks" }, "Cancel")));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = {
        url: url.value.trim(), events: words(events.value), name: name.value || null,
        description: description.value || null, disabled: disabled.checked, ordered: ordered.checked,
        envelope: envelope.value,
        headers: lines(headers.value, ":"), queryParams: lines(params.value, "="),
      };
      if (retry.value.trim()) body.retrySchedule = words(retry.value);
      if (timeout.value) body.timeoutMs = Number(timeout.value);
      if (inflight.value) body.maxInFlight = Number(inflight.value);
      body.signatureSchemes = schemes.filter((c) => c.checked).map((c) => c.value);
      body.filter = filter.value.trim() || null;
      body.rateLimit = rate.value ? Number(rate.value) : null;
      body.disableAfter = disableAfter.value.trim() || null;
      if (threshold.value) body.failureThreshold = Number(threshold.value);
      if (rateThreshold.value) body.failureRateThreshold = Number(rateThreshold.value);
      if (failWindow.value.trim()) body.failureWindow = failWindow.value.trim();
      if (minAttempts.value) body.failureWindowMinAttempts = Number(minAttempts.value);
      if (probe.value.trim()) body.probeInterval = probe.value.trim();
      if (authType.value === "none") body.auth = { type: "none" };
      if (authType.value === "bearer") body.auth = { type: "bearer", token: authToken.value };
      if (authType.value === "basic") body.auth = { type: "basic", username: authUser.value, password: authPassword.value };
      try {
        if (w) {
          await api("PUT", "/v1/webhooks/" + w.id, body);
          say("Saved.");
          go("/webhooks/" + w.id);
        } else {
          created(await api("POST", "/v1/webhooks", body));
        }
      } catch (error) {
        if (!(error instanceof Unauthorized)) form.querySelector("#form-error").textContent = error.message;
      }
    });
    show(form);
    url.focus();
  }

  function lines(text, sep) {
    const out = {};
    for (const line of text.split("\n")) {
      const at = line.indexOf(sep);
      if (at > 0) out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    return out;
  }

  // After creation: the secret, shown this once.
  function created(w) {
    const copy = h("button", { type: "button", id: "copy-secret" }, "Copy");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(w.secret);
        say("Secret copied.");
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById("secret"));
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        say("Select and copy the secret (the clipboard is not available here).");
      }
    });
    show(h("div", { class: "card" },
      h("h1", {}, "Webhook created"),
      h("p", {}, "Its signing secret is shown this once: the receiver checks the ",
        h("code", {}, "webhook-signature"), " v1 HMAC with it."),
      h("p", { class: "secret" }, h("code", { id: "secret" }, w.secret), " ", copy),
      h("p", {}, h("a", { id: "open-webhook", href: "#/webhooks/" + w.id }, "Open " + (w.name || "the webhook")))));
  }

  async function webhookPage(id, query) {
    const w = await api("GET", "/v1/webhooks/" + id);
    const toggle = h("button", { type: "button", id: "toggle-disabled" }, w.disabled ? "Enable" : "Disable");
    toggle.addEventListener("click", async () => {
      try {
        await api("PUT", "/v1/webhooks/" + id, { disabled: !w.disabled });
        say(w.disabled ? "Enabled." : "Disabled.");
        route();
      } catch (error) { failed(error); }
    });
    const remove = h("button", { type: "button", id: "delete", class: "danger" }, "Delete…");
    const confirm = h("div", { id: "confirm-delete", class: "confirm", hidden: true, role: "alertdialog", "aria-label": "Confirm deletion" },
      h("p", {}, "Delete this webhook? Its deliveries go with it."),
      h("button", { type: "button", id: "confirm-delete-yes", class: "danger", onclick: async () => {
        try {
          await api("DELETE", "/v1/webhooks/" + id);
          say("Deleted.");
          go("/webhooks");
        } catch (error) { failed(error); }
      } }, "Delete"),
      h("button", { type: "button", onclick: () => { confirm.hidden = true; remove.focus(); } }, "Cancel"));
    remove.addEventListener("click", () => { confirm.hidden = false; confirm.querySelector("button").focus(); });
    const section = deliveriesSection("/webhooks/" + id, query, { webhookId: id });
    show(
      h("div", { class: "title" }, h("h1", {}, w.name || "Webhook"),
        h("span", { id: "wh-state" }, w.disabled ? statusBadge("disabled") : statusBadge("enabled"))),
      h("dl", { class: "facts" },
        h("dt", {}, "URL"), h("dd", { class: "url" }, w.url),
        h("dt", {}, "Events"), h("dd", {}, w.events.join(" ")),
        h("dt", {}, "Retry schedule"), h("dd", {}, w.retrySchedule.join(" ")),
        h("dt", {}, "Timeout"), h("dd", {}, w.timeoutMs + " ms, at most " + w.maxInFlight + " in flight"),
        h("dt", {}, "Envelope"), h("dd", {}, w.envelope + (w.ordered ? ", ordered" : "")),
        h("dt", {}, "Authorization"), h("dd", {}, w.auth.type),
        h("dt", {}, "Signatures"), h("dd", { id: "wh-schemes-shown" }, w.signatureSchemes.join(" ")),
        h("dt", {}, "Filter"), h("dd", {}, w.filter ? h("code", {}, w.filter) : "every event"),
        h("dt", {}, "Rate limit"), h("dd", {}, w.rateLimit === null ? "none" : w.rateLimit + " deliveries/s"),
        h("dt", {}, "Failing after"), h("dd", {}, w.failureThreshold + " consecutive failures, or " +
          Math.round(w.failureRateThreshold * 100) + "% of at least " + w.failureWindowMinAttempts +
          " attempts in " + w.failureWindow + "; probed every " + w.probeInterval),
        h("dt", {}, "Disabled after failing for"), h("dd", {}, w.disableAfter || "never"),
        h("dt", {}, "Id"), h("dd", {}, h("code", {}, w.id))),
      h("h2", {}, "Health"),
      healthFacts(w),
      h("div", { class: "actions" },
        h("a", { class: "button", href: "#/webhooks/" + id + "/edit", id: "edit" }, "Edit"), toggle, remove),
      confirm,
      h("h2", {}, "Deliveries"),
      section.node);
    await section.start();
  }

  // The webhook's endpoint health and, when walhook disabled it, why.
  function healthFacts(w) {
    const x = w.health;
    return h("dl", { class: "facts", id: "wh-health" },
      h("dt", {}, "State"), h("dd", { id: "wh-health-state" }, healthBadge(x),
        x.failingSince ? " since " + when(x.failingSince) : null),
      w.disabledReason ? [h("dt", {}, "Disabled"), h("dd", { id: "wh-disabled-reason", class: "error" },
        when(w.disabledAt) + ": " + w.disabledReason)] : null,
      h("dt", {}, "Consecutive failures"), h("dd", {}, x.consecutiveFailures),
      h("dt", {}, "Last error"), h("dd", { id: "wh-last-error" }, x.lastError ? x.lastError + " (" + when(x.lastFailureAt) + ")" : "—"),
      h("dt", {}, "Last success"), h("dd", {}, when(x.lastSuccessAt)),
      x.state === "failing" ? [h("dt", {}, "Next probe"), h("dd", {}, when(x.nextProbeAt))] : null);
  }

  // Deliveries, newest first, filtered by status and event type (kept in the
  // URL of the page at `path`), keyset-paged, refreshed every 2 s on the
  // first page; `fixed` narrows them (webhookId, eventId).
  function deliveriesSection(path, query, fixed) {
    const status = query.get("status") || "";
    const eventType = query.get("eventType") || "";
    const cursor = query.get("cursor");
    const statusPick = h("select", { id: "delivery-status" },
      ["", "pending", "succeeded", "failed"].map((v) => h("option", { value: v, selected: v === status }, v || "any")));
    const typeInput = h("input", { id: "delivery-type", value: eventType, placeholder: "item.* or item.created" });
    const filters = h("form", { id: "delivery-filters", class: "filters" },
      field("Status", statusPick), field("Event type", typeInput),
      h("button", { type: "submit", id: "delivery-filter" }, "Filter"));
    const urlOf = (more) => {
      const q = new URLSearchParams();
      if (statusPick.value) q.set("status", statusPick.value);
      if (typeInput.value.trim()) q.set("eventType", typeInput.value.trim());
      for (const [k, v] of Object.entries(more || {})) q.set(k, v);
      const text = q.toString();
      return path + (text ? "?" + text : "");
    };
    filters.addEventListener("submit", (e) => { e.preventDefault(); go(urlOf()); });
    statusPick.addEventListener("change", () => go(urlOf()));
    const resendFailed = h("button", { type: "button", id: "resend-failed" }, "Resend failed on this page");
    const area = h("div", { id: "deliveries-area" });
    let shown = [];
    async function load() {
      const q = new URLSearchParams(Object.assign({ limit: "25" }, fixed));
      if (status) q.set("status", status);
      if (eventType) q.set("eventType", eventType);
      if (cursor) q.set("cursor", cursor);
      const page = await api("GET", "/v1/deliveries?" + q);
      shown = page.data;
      fill(area, deliveriesTable(page.data, !fixed.webhookId),
        page.nextCursor ? h("p", {}, h("a", { id: "older", href: "#" + urlOf({ cursor: page.nextCursor }) }, "Older deliveries →")) : null);
    }
    resendFailed.addEventListener("click", async () => {
      const failedOnes = shown.filter((d) => d.status === "failed");
      try {
        for (const d of failedOnes) await api("POST", "/v1/deliveries/" + d.id + "/redeliver");
        say("Queued again: " + failedOnes.length + ".");
        await load();
      } catch (error) { failed(error); }
    });
    return {
      node: h("div", {}, h("div", { class: "title" }, filters, resendFailed), area),
      start: async () => {
        await load();
        if (!cursor) every2s(load);
      },
    };
  }

  async function allDeliveriesPage(query) {
    const section = deliveriesSection("/deliveries", query, {});
    show(h("h1", {}, "Deliveries"), section.node);
    await section.start();
  }

  function deliveriesTable(rows, withWebhook) {
    if (rows.length === 0) return h("p", { id: "no-deliveries" }, "No deliveries.");
    const columns = ["Delivery"].concat(withWebhook ? ["Webhook"] : [],
      ["Event type", "Status", "Attempts", "Last response", "Last attempt"]);
    return h("table", { id: "deliveries" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((d) => h("tr", { "data-id": d.id, "data-status": d.status },
        h("td", {}, h("a", { href: "#/deliveries/" + d.id }, "#" + d.id)),
        withWebhook ? h("td", {}, h("a", { href: "#/webhooks/" + d.webhookId, class: "url" }, d.webhookId.slice(0, 8))) : null,
        h("td", {}, d.eventType),
        h("td", {}, statusBadge(d.status)),
        h("td", { class: "num" }, d.attempts),
        h("td", {}, d.lastStatusCode !== null ? String(d.lastStatusCode) : (d.lastError || "—")),
        h("td", {}, when(d.lastAttemptAt))))));
  }

  // ---- one delivery ------------------------------------------------------------

  async function deliveryPage(id) {
    const area = h("div", {});
    const unfolded = new Set(); // attempts whose headers stay open across reloads
    async function load() {
      const d = await api("GET", "/v1/deliveries/" + id);
      const attempts = await api("GET", "/v1/deliveries/" + id + "/attempts?limit=100");
      const resend = h("button", { type: "button", id: "resend" }, "Resend");
      resend.addEventListener("click", async () => {
        try {
          await api("POST", "/v1/deliveries/" + id + "/redeliver");
          say("Queued again.");
          await load();
        } catch (error) { failed(error); }
      });
      fill(area,
        h("div", { class: "title" }, h("h1", {}, "Delivery #" + d.id), h("span", { id: "delivery-state" }, statusBadge(d.status)), resend),
        h("dl", { class: "facts" },
          h("dt", {}, "Event"), h("dd", {}, h("a", { href: "#/events/" + d.eventId }, d.eventType + " " + d.eventId)),
          h("dt", {}, "Webhook"), h("dd", {}, h("a", { href: "#/webhooks/" + d.webhookId }, d.webhookId)),
          h("dt", {}, "Attempts"), h("dd", { id: "attempt-count" }, d.attempts),
          h("dt", {}, "Next attempt"), h("dd", {}, when(d.nextAttemptAt)),
          h("dt", {}, "Created"), h("dd", {}, when(d.createdAt))),
        h("h2", {}, "Attempts"),
        attempts.data.length === 0 ? h("p", {}, "No attempt yet.") :
          h("table", { id: "attempts" },
            h("thead", {}, h("tr", {}, ["#", "Time", "Duration", "Status", "Error", "Response body", "Headers sent"].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, attempts.data.map((a) => h("tr", { "data-attempt": a.attempt },
              h("td", { class: "num" }, a.attempt),
              h("td", {}, when(a.attemptedAt)),
              h("td", { class: "num" }, a.durationMs + " ms"),
              h("td", { class: "num" }, a.statusCode === null ? "—" : a.statusCode),
              h("td", {}, a.error || ""),
              h("td", {}, a.responseBody ? h("pre", {}, a.responseBody) : ""),
              h("td", {}, sentHeaders(a.requestHeaders, a.attempt, unfolded)))))));
    }
    show(area);
    await load();
    every2s(load);
  }

  // The headers an attempt sent, folded: one "name: value" line each. The
  // page reloads every 2 s; `unfolded` keeps the attempts the user opened.
  function sentHeaders(headers, attempt, unfolded) {
    if (!headers) return h("span", { class: "muted", title: "Not kept: by default only attempts that did not succeed keep their headers (setting attempt_request_headers)" }, "—");
    const lines = Object.entries(headers).map(([name, value]) => name + ": " + value);
    const details = h("details", { class: "sent-headers", open: unfolded.has(attempt) },
      h("summary", {}, lines.length + " headers"),
      h("pre", {}, lines.join("\n")));
    details.addEventListener("toggle", () => {
      if (details.open) unfolded.add(attempt); else unfolded.delete(attempt);
    });
    return details;
  }

  // ---- events ----------------------------------------------------------------------

  async function eventsPage(query) {
    const input = (name, label, attrs) => field(label, h("input", Object.assign({ id: "ev-" + name, name, value: query.get(name) || "" }, attrs)));
    const form = h("form", { id: "events-form", class: "filters" },
      input("type", "Type", { placeholder: "organisation.* " }),
      input("apiresource", "Apiresource", { placeholder: "/organisations/*" }),
      input("fromRevision", "From revision", { type: "number" }),
      input("toRevision", "To revision", { type: "number" }),
      h("button", { type: "submit", id: "ev-search" }, "Search"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const el of form.querySelectorAll("input")) if (el.value) q.set(el.name, el.value);
      go("/events?" + q);
    });
    const q = new URLSearchParams(query);
    q.set("limit", "50");
    const page = await api("GET", "/v1/events?" + q);
    const next = new URLSearchParams(query);
    if (page.nextCursor) next.set("cursor", page.nextCursor);
    show(h("h1", {}, "Events"), form,
      page.data.length === 0 ? h("p", {}, "No events match.") :
        h("table", { id: "events" },
          h("thead", {}, h("tr", {}, ["Type", "Apiresource", "Revision", "Committed"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, page.data.map((e) => h("tr", { "data-id": e.id },
            h("td", {}, h("a", { href: "#/events/" + e.id }, e.type)),
            h("td", { class: "url" }, e.apiresource),
            h("td", { class: "num" }, e.revision),
            h("td", {}, when(e.commitTime)))))),
      page.nextCursor ? h("p", {}, h("a", { href: "#/events?" + next }, "Older events →")) : null);
  }

  async function eventPage(id) {
    const e = await api("GET", "/v1/events/" + id);
    show(h("h1", {}, e.type),
      h("dl", { class: "facts" },
        h("dt", {}, "Id (webhook-id)"), h("dd", {}, h("code", {}, e.id)),
        h("dt", {}, "Apiresource"), h("dd", {}, e.apiresource),
        h("dt", {}, "Revision"), h("dd", {}, e.revision),
        h("dt", {}, "Committed"), h("dd", {}, when(e.commitTime))),
      h("h2", {}, "Body"),
      h("pre", { id: "event-body", tabindex: 0 }, e.body === null ? "(not built: see walhook.events.error)" : JSON.stringify(e.body, null, 2)),
      h("h2", {}, "Received by"),
      deliveriesTable((await api("GET", "/v1/deliveries?limit=100&eventId=" + e.id)).data, true));
  }

  // ---- the event catalogue ------------------------------------------------------

  async function cataloguePage() {
    const c = await api("GET", "/v1/catalogue");
    show(h("h1", {}, "Event catalogue"),
      h("p", {}, "Every event type the routes can produce. Samples are built by each route's templates from a made-up row."),
      c.data.length === 0 ? h("p", {}, "No routes yet (INSERT INTO walhook.routes).") :
        h("table", { id: "catalogue" },
          h("thead", {}, h("tr", {}, ["Type", "Table", "When", "Sample body"].map((col) => h("th", { scope: "col" }, col)))),
          h("tbody", {}, c.data.map((e) => h("tr", { "data-type": e.type },
            h("td", {}, h("a", { href: "#/events?type=" + encodeURIComponent(e.type) }, e.type),
              e.enabled ? null : h("span", { class: "badge status-disabled" }, "route disabled")),
            h("td", {}, e.table),
            h("td", {}, e.when),
            h("td", {}, e.sample === null ? "—" :
              h("details", {}, h("summary", {}, "sample"), h("pre", {}, JSON.stringify(e.sample, null, 2)))))))));
  }

  // ---- backfills -------------------------------------------------------------------

  async function backfillsPage() {
    const hooks = (await api("GET", "/v1/webhooks?limit=100")).data;
    const names = new Map(hooks.map((w) => [w.id, w.name || w.id]));
    const webhook = h("select", { id: "bf-webhook", required: true },
      hooks.map((w) => h("option", { value: w.id }, names.get(w.id))));
    const table = h("input", { id: "bf-table", required: true, placeholder: "directory.organisations" });
    const where = h("input", { id: "bf-where", placeholder: "status = 'active'" });
    const form = h("form", { id: "backfill-form", class: "filters" },
      field("Webhook", webhook), field("Table", table), field("Where (SQL, optional)", where),
      h("button", { type: "submit", id: "bf-start" }, "Start backfill"));
    const error = h("p", { id: "bf-error", class: "error", role: "alert" });
    const area = h("div", { id: "backfills-area" });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.textContent = "";
      const body = { webhookId: webhook.value, table: table.value.trim() };
      if (where.value.trim()) body.where = where.value.trim();
      try {
        await api("POST", "/v1/backfills", body);
        say("Backfill queued.");
        await load();
      } catch (err) {
        if (!(err instanceof Unauthorized)) error.textContent = err.message;
      }
    });
    async function load() {
      const list = (await api("GET", "/v1/backfills")).data;
      fill(area, list.length === 0 ? h("p", {}, "No backfill in the last hour.") :
        h("table", { id: "backfills" },
          h("thead", {}, h("tr", {}, ["Table", "Webhook", "Status", "Progress", "Started", "Finished", ""]
            .map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, list.map((b) => h("tr", { "data-id": b.id, "data-status": b.status },
            h("td", {}, b.table),
            h("td", {}, h("a", { href: "#/webhooks/" + b.webhookId }, names.get(b.webhookId) || b.webhookId)),
            h("td", {}, statusBadge(b.status), b.error ? h("div", { class: "error" }, b.error) : null),
            h("td", {}, progressOf(b)),
            h("td", {}, when(b.startedAt)),
            h("td", {}, when(b.finishedAt)),
            h("td", {}, b.status === "pending" || b.status === "running"
              ? h("button", { type: "button", class: "cancel", onclick: async () => {
                try {
                  await api("POST", "/v1/backfills/" + b.id + "/cancel");
                  await load();
                } catch (err) { failed(err); }
              } }, "Cancel") : null))))));
    }
    show(h("h1", {}, "Backfills"),
      h("p", {}, "Send a table's current rows to one webhook as ", h("code", {}, "<resource>.snapshot"),
        " events, consistent with the stream. The daemon runs one backfill at a time, oldest first."),
      form, error, area);
    await load();
    every2s(load);
  }

  function progressOf(b) {
    const sent = b.rowsSent + " rows sent";
    if (b.status === "done" || !b.estimatedRows) return h("span", { class: "rows" }, sent);
    const label = sent + " of about " + b.estimatedRows;
    return h("span", { class: "rows" },
      h("progress", { max: b.estimatedRows, value: Math.min(b.rowsSent, b.estimatedRows), "aria-label": label }),
      " ", label);
  }

  // ---- health ------------------------------------------------------------------------

  async function healthPage(query) {
    const ready = await fetch("/readyz", { cache: "no-store" });
    const readyText = await ready.text();
    const jwks = await (await fetch("/.well-known/jwks.json", { cache: "no-store" })).json();
    const status = await api("GET", "/v1/status");
    const cursor = query.get("cursor");
    const audit = await api("GET", "/v1/audit?limit=25" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    const slot = status.slot;
    const bytes = (n) => n === null || n === undefined ? "—" :
      n >= 1 << 30 ? (n / (1 << 30)).toFixed(1) + " GiB" : n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MiB" :
        n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B";
    const counts = (pairs) => pairs.length === 0 ? "none" : pairs.map(([name, n]) => name + " " + n).join(", ");
    show(h("h1", {}, "Health"),
      h("p", { id: "readiness" }, statusBadge(ready.ok ? "succeeded" : "failed"), " ", readyText.trim()),
      slot.warnings.length ? h("ul", { id: "warnings", class: "error", role: "alert" },
        slot.warnings.map((w) => h("li", {}, w))) : null,
      h("h2", {}, "Slot " + slot.name),
      h("dl", { class: "facts", id: "slot" },
        h("dt", {}, "State"), h("dd", {}, !slot.exists ? "missing" : slot.active ? "active (streaming)" : "inactive"),
        h("dt", {}, "Confirmed position"), h("dd", {}, slot.confirmed_flush_lsn || "—"),
        h("dt", {}, "Lag"), h("dd", { id: "lag" }, bytes(slot.lag_bytes) +
          (slot.lag_seconds === null || slot.lag_seconds === undefined ? "" : ", " + slot.lag_seconds.toFixed(1) + " s")),
        h("dt", {}, "WAL retained"), h("dd", {}, bytes(slot.retained_wal_bytes) +
          (slot.wal_status ? " (" + slot.wal_status + ")" : "")),
        h("dt", {}, "WAL before the slot is lost"), h("dd", {}, slot.safe_wal_size === null ? "unlimited" : bytes(slot.safe_wal_size))),
      h("h2", {}, "Deliveries"),
      h("dl", { class: "facts", id: "counts" },
        h("dt", {}, "Pending"), h("dd", { id: "pending" }, status.pending_deliveries),
        h("dt", {}, "In memory, no row yet"), h("dd", { id: "in-memory" }, status.owed_without_row),
        h("dt", { title: "a slow or failing webhook's backlog, waiting in its events (walhook.deferrals)" }, "Deferred, no row yet"),
        h("dd", { id: "deferred" }, status.deferred_without_row),
        h("dt", {}, "Events, last hour"), h("dd", {}, counts(status.events_last_hour)),
        h("dt", {}, "Deliveries, last hour"), h("dd", {}, counts(status.deliveries_last_hour))),
      h("h2", {}, "Failing webhooks"),
      status.failing_subscriptions.length === 0 ? h("p", { id: "no-failing" }, "None.") :
        h("table", { id: "failing" },
          h("thead", {}, h("tr", {}, ["Webhook", "Failed", "Retrying", "Last error"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, status.failing_subscriptions.map((f) => h("tr", {},
            h("td", {}, h("a", { href: "#/webhooks/" + f.id + "?status=failed" }, f.name || f.url)),
            h("td", { class: "num" }, f.failed), h("td", { class: "num" }, f.retrying),
            h("td", {}, f.last_error || ""))))),
      h("h2", {}, "Signing keys (JWKS)"),
      h("ul", { id: "keys" }, jwks.keys.map((k) => h("li", {}, h("code", {}, k.kid), " ", k.crv))),
      h("p", {}, h("a", { href: "/.well-known/jwks.json" }, "/.well-known/jwks.json"), " · ", h("a", { href: "/metrics" }, "/metrics")),
      h("h2", {}, "Audit log"),
      h("table", { id: "audit" },
        h("thead", {}, h("tr", {}, ["Time", "Actor", "Action", "Object"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, audit.data.map((a) => h("tr", {},
          h("td", {}, when(a.at)), h("td", {}, a.actor), h("td", {}, a.action),
          h("td", { class: "url" }, [a.object, a.objectId].filter(Boolean).join(" ")))))),
      audit.nextCursor ? h("p", {}, h("a", { id: "older-audit", href: "#/health?cursor=" + encodeURIComponent(audit.nextCursor) }, "Older entries →")) : null);
  }

  // ---- start -------------------------------------------------------------------------

  forget.addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    prompt();
  });
  window.addEventListener("hashchange", route);
  route();
})();
