// The gallery's live part: a preview of the values a person picks, embed snippets, copy buttons,
// and a search that refines the results as one types.
// Text from the server only reaches the page through textContent and form values, or as this
// server's own page parsed by DOMParser (which runs no script), never as a string of HTML.
"use strict";

(() => {
  const DEBOUNCE_MS = 350;
  const SEARCH_MS = 250;
  const COPIED_MS = 1600;
  const root = document.documentElement;
  const HIDPI = root.dataset.hidpi;
  // where people reach the server (behind a proxy, not necessarily this page's origin)
  const BASE = root.dataset.publicUrl || location.origin;
  root.classList.replace("no-js", "js");

  const withDpi = (url) => `${url}${url.includes("?") ? "&" : "?"}_dpi=${HIDPI}`;
  const escapeHtml = (text) =>
    text.replace(/[&<>"']/g, (c) => `&${{ "&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "#x27" }[c]};`);
  const escapeMarkdown = (text) => text.replace(/[\\[\]]/g, "\\$&");
  // commas stay readable: they separate list items, and mean the same encoded or not
  const encode = (text) => encodeURIComponent(text).replace(/%2C/gi, ",");

  const isList = (input) => input.dataset.type.startsWith("list");
  const listItems = (text, type) => (type === "list[str]" ? text.split(",") : text.split(",").map((s) => s.trim()));

  /** The value as the query string should carry it: "true"/"false" for a checkbox, list items trimmed. */
  function queryText(input) {
    if (input.type === "checkbox") return input.checked ? "true" : "false";
    if (isList(input)) return listItems(input.value, input.dataset.type).join(",");
    return input.type === "number" ? input.value.trim() : input.value;
  }

  /** Whether the field still holds its default (the value the page was rendered with). */
  function isDefault(input) {
    if (input.type === "checkbox") return input.checked === input.defaultChecked;
    const [now, was] = [input.value.trim(), input.defaultValue.trim()];
    if (input.type === "number" && now !== "" && was !== "") return Number(now) === Number(was);
    if (isList(input)) {
      const type = input.dataset.type;
      return listItems(input.value, type).join(",") === listItems(input.defaultValue, type).join(",");
    }
    return input.value === input.defaultValue;
  }

  /** `?name=value&...` for the fields that differ from their defaults, in the form's order. */
  function queryOf(form) {
    const pairs = [...form.querySelectorAll("input[name]")]
      .filter((input) => !isDefault(input))
      .map((input) => `${encode(input.name)}=${encode(queryText(input))}`);
    return pairs.length ? `?${pairs.join("&")}` : "";
  }

  function fillSnippets(card, url, url2x) {
    const alt = card.dataset.alt;
    const [absolute, absolute2x] = [BASE + url, BASE + url2x];
    const snippets = {
      url: absolute,
      markdown: `![${escapeMarkdown(alt)}](${absolute})`,
      html: `<img src="${escapeHtml(absolute)}" srcset="${escapeHtml(absolute2x)} 2x" alt="${escapeHtml(alt)}">`,
    };
    for (const field of card.querySelectorAll("[data-snippet]")) {
      field.value = snippets[field.dataset.snippet];
    }
  }

  /** The server's `error.message` for a failed chart URL, asked for as JSON. */
  async function reason(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return String(body.error.message);
    } catch {
      // not JSON: fall back to the status line
    }
    return `The server answered ${response.status} ${response.statusText}`.trim();
  }

  function setUpChart(card) {
    const img = card.querySelector(".chart-image");
    const message = card.querySelector(".chart-message");
    const form = card.querySelector("form.params");
    let generation = 0;
    let timer;
    let inFlight;

    const say = (text, state) => {
      message.textContent = text;
      if (state) message.dataset.state = state;
      else delete message.dataset.state;
    };

    // An <img> that fails outright (the server's error PNG loads fine): ask for the JSON reason.
    img.addEventListener("error", async () => {
      const ticket = generation;
      const url = img.currentSrc || img.src;
      let text;
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" } });
        text = response.ok ? "The chart could not be shown." : await reason(response);
      } catch (error) {
        text = `The server could not be reached (${error.message}).`;
      }
      if (ticket !== generation) return;
      img.classList.add("stale");
      say(text, "error");
    });

    fillSnippets(card, card.dataset.url, card.dataset.url2x);
    if (!form) return;

    // relative to this page, to fetch and show it (behind a proxy's path prefix too)
    const current = (query = queryOf(form)) => {
      const url = form.dataset.base + query;
      return [url, withDpi(url)];
    };

    const refresh = () => {
      const query = queryOf(form);
      const path = card.dataset.url + query; // from the server's root, for the snippets
      fillSnippets(card, path, withDpi(path));
      for (const link of card.querySelectorAll("a[data-base]")) link.href = link.dataset.base + query;
    };

    // Ask as JSON first: a good chart comes back as the image (and is cached for the <img>),
    // a bad one as the server's message, which the page shows instead of a picture of it.
    async function preview() {
      clearTimeout(timer);
      const [url, url2x] = current();
      const ticket = ++generation;
      if (inFlight) inFlight.abort();
      inFlight = new AbortController();
      card.setAttribute("aria-busy", "true");
      say("Rendering…");
      try {
        const wanted = window.devicePixelRatio > 1 ? url2x : url;
        const response = await fetch(wanted, {
          headers: { Accept: "application/json" },
          signal: inFlight.signal,
        });
        if (!response.ok) {
          const text = await reason(response);
          if (ticket !== generation) return;
          img.classList.add("stale");
          say(text, "error");
          return;
        }
        await response.blob();
        if (ticket !== generation) return;
        img.loading = "eager";
        img.srcset = `${url2x} 2x`;
        img.src = url;
        await img.decode().catch(() => undefined);
        if (ticket !== generation || img.naturalWidth === 0) return;
        img.classList.remove("stale");
        say("");
      } catch (error) {
        if (error.name === "AbortError" || ticket !== generation) return;
        img.classList.add("stale");
        say(`The server could not be reached (${error.message}).`, "error");
      } finally {
        if (ticket === generation) card.removeAttribute("aria-busy");
      }
    }

    form.addEventListener("input", () => {
      refresh();
      clearTimeout(timer);
      timer = setTimeout(preview, DEBOUNCE_MS);
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      preview();
    });
    form.addEventListener("reset", () => {
      // the fields take their defaults after this event
      setTimeout(() => {
        refresh();
        preview();
      });
    });
  }

  async function copy(button) {
    const field = document.getElementById(button.dataset.copy);
    let copied = false;
    try {
      await navigator.clipboard.writeText(field.value);
      copied = true;
    } catch {
      // no Clipboard API (a plain-http origin other than localhost): the old way
      field.focus();
      field.select();
      copied = document.execCommand("copy");
    }
    button.textContent = copied ? "Copied" : "Press Ctrl+C";
    button.toggleAttribute("data-copied", copied);
    clearTimeout(button.copiedTimer);
    button.copiedTimer = setTimeout(() => {
      button.textContent = "Copy";
      button.removeAttribute("data-copied");
    }, COPIED_MS);
  }

  /**
   * Typing in the search box fetches this same page for the new words and swaps in its results,
   * so the server's search (and its HTML, which works without JavaScript) is the only one.
   */
  function setUpSearch(form) {
    const main = document.getElementById("notebooks");
    const startedIn = new URLSearchParams(location.search).get("folder") || "";
    let timer;
    let inFlight;
    let generation = 0;

    /** The page for what the form holds; with the box emptied, the folder the page started in. */
    const target = () => {
      const params = new URLSearchParams();
      for (const [name, value] of new FormData(form)) {
        if (String(value).trim()) params.append(name, value);
      }
      if (!params.has("q")) {
        params.delete("folder");
        if (startedIn) params.set("folder", startedIn);
      }
      const query = params.toString();
      return query ? `?${query}` : location.pathname;
    };

    async function refine() {
      clearTimeout(timer);
      const url = target();
      const ticket = ++generation;
      if (inFlight) inFlight.abort();
      inFlight = new AbortController();
      main.setAttribute("aria-busy", "true");
      try {
        const response = await fetch(url, { headers: { Accept: "text/html" }, signal: inFlight.signal });
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("notebooks");
        if (ticket !== generation) return;
        if (!fresh) throw new Error(`${response.status} ${response.statusText}`.trim());
        main.replaceChildren(...fresh.childNodes);
        document.title = page.title;
        history.replaceState(null, "", url);
        for (const card of main.querySelectorAll(".chart")) setUpChart(card);
      } catch (error) {
        if (error.name === "AbortError" || ticket !== generation) return;
        const summary = main.querySelector(".summary");
        if (summary) summary.textContent = `The search could not be run (${error.message}).`;
      } finally {
        if (ticket === generation) main.removeAttribute("aria-busy");
      }
    }

    form.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(refine, SEARCH_MS);
    });
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-copy]");
    if (button) copy(button);
  });
  document.addEventListener("focusin", (event) => {
    if (event.target.matches(".snippet")) event.target.select();
  });

  for (const card of document.querySelectorAll(".chart")) setUpChart(card);
  const search = document.querySelector("form.search");
  if (search) setUpSearch(search);
})();
