// funnelrank playground: plain JavaScript, no library. Every request goes to this page's own origin (relative
// URLs; the server's Content-Security-Policy allows nothing else). Texts are set with textContent, never as HTML.
"use strict";

(function () {
  const KEY_STORAGE = "funnelrank.apiKey";
  const STAGE2_KEYS = ["rerank", "total"];
  const $ = (id) => document.getElementById(id);
  const state = { health: null, busy: false };

  // ---------------------------------------------------------------- small helpers

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fmtScore(x) {
    return x === null || x === undefined ? "-" : Number(x).toFixed(3);
  }

  function fmtMs(x) {
    return x < 10 ? x.toFixed(2) + " ms" : x < 100 ? x.toFixed(1) + " ms" : Math.round(x) + " ms";
  }

  function apiKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || "";
    } catch (e) {
      return $("api-key").value;
    }
  }

  function showMessage(text, isError) {
    const box = $("message");
    box.textContent = text;
    box.className = isError ? "message error" : "message";
    box.hidden = !text;
  }

  // A request to this service: JSON in, {ok, status, body} out; a clear message for what a user can fix.
  async function call(path, payload) {
    const headers = { "Content-Type": "application/json" };
    const key = apiKey();
    if (key) headers["Authorization"] = "Bearer " + key;
    let response;
    try {
      response = await fetch(path, {
        method: payload === undefined ? "GET" : "POST",
        headers: headers,
        body: payload === undefined ? undefined : JSON.stringify(payload),
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (err) {
      return { ok: false, status: 0, message: "Could not reach the funnelrank service: " + err.message };
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (response.ok) return { ok: true, status: response.status, body: body };
    const said = body && typeof body.message === "string" ? body.message : response.statusText;
    let message;
    if (response.status === 401) {
      message = key
        ? "The server refused this API key (HTTP 401). Enter the key the server was started with " +
          "(funnelrank serve --api-key or $FUNNELRANK_API_KEY) in the API key field."
        : "This server needs an API key (HTTP 401). Enter it in the API key field above.";
    } else if (response.status === 403) {
      message = "Access denied (HTTP 403): " + said + ". Check the API key field and the server's access rules.";
    } else if (response.status === 429 || response.status === 503) {
      const retry = response.headers.get("Retry-After");
      message = "The server is busy (HTTP " + response.status + "): " + said +
        (retry ? " Retry in " + retry + " s." : "");
    } else {
      message = "Error (HTTP " + response.status + "): " + said;
    }
    return { ok: false, status: response.status, message: message };
  }

  // ---------------------------------------------------------------- drawing

  // One result row: rank, id + text (+ note), and the score as a bar (0..1 unless `scale` says otherwise).
  function row(opts) {
    const li = el("li", "result" + (opts.below ? " below" : ""));
    li.dataset.id = opts.id;
    if (opts.score !== null && opts.score !== undefined) li.dataset.score = String(opts.score);
    li.appendChild(el("span", "rank", opts.rank));
    const main = el("div", "doc");
    main.appendChild(el("span", "doc-id", opts.id));
    main.appendChild(el("span", "text", opts.text));
    if (opts.note) main.appendChild(el("span", "note", opts.note));
    li.appendChild(main);
    const score = el("div", "score");
    const bar = el("div", "bar");
    const fill = el("div", "fill");
    const value = opts.barValue === null || opts.barValue === undefined ? 0 : opts.barValue;
    fill.style.width = Math.max(0, Math.min(1, value)) * 100 + "%";
    bar.appendChild(fill);
    if (opts.floor !== null && opts.floor !== undefined) {
      const tick = el("div", "tick");
      tick.style.left = Math.max(0, Math.min(1, opts.floor)) * 100 + "%";
      tick.title = "floor " + opts.floor;
      bar.appendChild(tick);
    }
    score.appendChild(bar);
    score.appendChild(el("span", "value", opts.scoreLabel));
    li.appendChild(score);
    return li;
  }

  function floorLine(floor, where) {
    const li = el("li", "floor-line", "floor " + floor + " " + where);
    li.setAttribute("role", "separator");
    li.dataset.floor = String(floor);
    return li;
  }

  function noEvidenceText(floor, best, count) {
    if (!count) return "No evidence: stage 1 found no candidates for this query.";
    return "No evidence: nothing cleared the floor (" + floor + "); the best of " + count +
      " candidates scored " + fmtScore(best) + ". Answer \u201cI don't know\u201d rather than use them.";
  }

  function clearSearch() {
    $("stage1-list").replaceChildren();
    $("reranked-list").replaceChildren();
    $("reranked-more").textContent = "";
    $("stage1-caption").textContent = "";
    $("reranked-caption").textContent = "";
    $("no-evidence").hidden = true;
    $("timings").hidden = true;
  }

  function drawTimings(timings) {
    let stage1 = 0;
    const parts = [];
    for (const [name, ms] of Object.entries(timings || {})) {
      if (STAGE2_KEYS.includes(name)) continue;
      stage1 += ms;
      parts.push(name + " " + fmtMs(ms));
    }
    $("t-stage1").textContent = fmtMs(stage1);
    $("t-stage2").textContent = "rerank" in timings ? fmtMs(timings.rerank) : "not run";
    $("t-total").textContent = "total" in timings ? fmtMs(timings.total) : "-";
    $("t-detail").textContent = parts.length ? "(" + parts.join(", ") + ")" : "";
    $("timings").hidden = false;
  }

  function drawSearch(body, topK) {
    clearSearch();
    const funnel = body.funnel || [];
    const floor = body.floor;
    const hasFloor = floor !== null && floor !== undefined;
    const below = (entry) => hasFloor && entry.score !== null && entry.score < floor;

    // Reranked: the results as served, then the floor line, then the best candidates below the floor, greyed.
    const reranked = $("reranked-list");
    const kept = body.results || [];
    const position = new Map();
    kept.forEach((r, i) => {
      position.set(r.id, i + 1);
      reranked.appendChild(row({ rank: i + 1, id: r.id, text: r.text, score: r.score, barValue: r.score,
        scoreLabel: fmtScore(r.score), floor: hasFloor ? floor : null }));
    });
    const cut = funnel.filter((e) => !e.kept && !below(e));
    const dropped = funnel.filter(below).sort((a, b) => b.score - a.score);
    const shownDropped = dropped.slice(0, Math.max(topK, 5));
    if (hasFloor) reranked.appendChild(floorLine(floor, "(relevance floor: results below it are dropped)"));
    shownDropped.forEach((e) => {
      reranked.appendChild(row({ rank: "", id: e.id, text: e.text, score: e.score, barValue: e.score,
        scoreLabel: fmtScore(e.score), floor: floor, below: true, note: "below the floor" }));
    });
    const more = [];
    if (cut.length) more.push(cut.length + " more candidate(s) above the floor beyond top k = " + topK);
    if (dropped.length > shownDropped.length) more.push((dropped.length - shownDropped.length) +
      " more below the floor not shown");
    $("reranked-more").textContent = more.join("; ");
    $("reranked-caption").textContent = kept.length + " kept of " + body.candidates + " candidates";

    // Stage 1: the candidates in stage-1 order, bars scaled to the best stage-1 score.
    const shown = funnel.slice(0, Math.max(kept.length + shownDropped.length, Math.min(topK, funnel.length)));
    const top = Math.max(...shown.map((e) => Math.abs(e.stage1_score || 0)), 1e-12);
    const stage1 = $("stage1-list");
    shown.forEach((e) => {
      const where = position.has(e.id) ? "reranked #" + position.get(e.id)
        : below(e) ? "dropped: below the floor" : "not in the top k";
      stage1.appendChild(row({ rank: e.stage1_rank, id: e.id, text: e.text, score: e.stage1_score,
        barValue: e.stage1_score === null ? 0 : Math.abs(e.stage1_score) / top,
        scoreLabel: "stage 1 " + fmtScore(e.stage1_score) + " | rerank " + fmtScore(e.score),
        below: below(e), note: where }));
    });
    $("stage1-caption").textContent = "top " + shown.length + " of " + funnel.length + " candidates";

    if (body.no_evidence) {
      const best = funnel.reduce((m, e) => (e.score !== null && e.score > m ? e.score : m), -Infinity);
      const banner = $("no-evidence");
      banner.textContent = noEvidenceText(floor, best, funnel.length);
      banner.hidden = false;
    }
    drawTimings(body.timings_ms || {});
  }

  function drawRerank(passages, body, floor, ms) {
    const list = $("rerank-list");
    list.replaceChildren();
    const scored = (body.results || []).map((r) => ({ index: r.index, score: r.relevance_score }));
    scored.sort((a, b) => b.score - a.score);
    let lineDrawn = false;
    scored.forEach((r, i) => {
      const isBelow = r.score < floor;
      if (isBelow && !lineDrawn) {
        list.appendChild(floorLine(floor, "(relevance floor)"));
        lineDrawn = true;
      }
      list.appendChild(row({ rank: i + 1, id: "passage " + (r.index + 1), text: passages[r.index], score: r.score,
        barValue: r.score, scoreLabel: fmtScore(r.score), floor: floor, below: isBelow,
        note: isBelow ? "below the floor" : "" }));
    });
    if (!lineDrawn) list.appendChild(floorLine(floor, "(relevance floor)"));
    const banner = $("rerank-no-evidence");
    const best = scored.length ? scored[0].score : -Infinity;
    banner.hidden = !(best < floor);
    banner.textContent = banner.hidden ? "" : noEvidenceText(floor, best, scored.length);
    const timing = $("rerank-timings");
    timing.textContent = scored.length + " passages scored in " + fmtMs(ms) + " (round trip)";
    timing.hidden = false;
  }

  // ---------------------------------------------------------------- actions

  function readNumber(input, what, min, max) {
    const text = input.value.trim();
    if (!text) return null;
    const value = Number(text);
    if (!Number.isFinite(value) || value < min || value > max) {
      throw new Error(what + " must be a number from " + min + " to " + max + ", got " + JSON.stringify(text));
    }
    return value;
  }

  function shareUrl(params) {
    const url = new URL(window.location.href);
    url.search = "";
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, String(value));
    }
    window.history.replaceState(null, "", url.pathname + url.search);
  }

  async function search() {
    const query = $("q").value.trim();
    if (!query) return;
    let topK, floor;
    try {
      topK = readNumber($("top-k"), "top k", 1, 1000) || 10;
      if (!Number.isInteger(topK)) throw new Error("top k must be a whole number");
      floor = readNumber($("floor"), "floor", 0, 1);
    } catch (err) {
      showMessage(err.message, true);
      return;
    }
    shareUrl({ q: query, top_k: topK === 10 ? null : topK, floor: floor });
    const payload = { query: query, top_k: topK, explain: true };
    if (floor !== null) payload.floor = floor;
    $("search-button").disabled = true;
    document.body.dataset.state = "searching";
    const answer = await call("v1/search", payload);
    $("search-button").disabled = false;
    if (!answer.ok) {
      clearSearch();
      showMessage(answer.message, true);
      document.body.dataset.state = "error";
      return;
    }
    showMessage("", false);
    drawSearch(answer.body, topK);
    document.body.dataset.state = "done";
  }

  async function rerank() {
    const query = $("rerank-query").value.trim();
    const passages = $("passages").value.split("\n").map((p) => p.trim()).filter((p) => p);
    if (!query || !passages.length) {
      showMessage("Enter a query and at least one passage (one per line).", true);
      return;
    }
    let floor;
    try {
      floor = readNumber($("rerank-floor"), "floor", 0, 1);
    } catch (err) {
      showMessage(err.message, true);
      return;
    }
    if (floor === null) floor = state.health && typeof state.health.floor === "number" ? state.health.floor : 0;
    $("rerank-button").disabled = true;
    document.body.dataset.state = "reranking";
    const start = performance.now();
    // No floor in the request: every passage comes back scored, and the floor is drawn over them here.
    const answer = await call("v1/rerank", { query: query, documents: passages, top_n: passages.length });
    $("rerank-button").disabled = false;
    if (!answer.ok) {
      $("rerank-list").replaceChildren();
      $("rerank-no-evidence").hidden = true;
      showMessage(answer.message, true);
      document.body.dataset.state = "error";
      return;
    }
    showMessage("", false);
    drawRerank(passages, answer.body, floor, performance.now() - start);
    document.body.dataset.state = "done";
  }

  function selectTab(name) {
    for (const tab of ["search", "rerank"]) {
      $("tab-" + tab).setAttribute("aria-selected", String(tab === name));
      $("panel-" + tab).hidden = tab !== name;
    }
  }

  async function start() {
    const keyInput = $("api-key");
    keyInput.value = apiKey();
    keyInput.addEventListener("input", () => {
      try {
        if (keyInput.value) sessionStorage.setItem(KEY_STORAGE, keyInput.value);
        else sessionStorage.removeItem(KEY_STORAGE);
      } catch (e) {
        // sessionStorage unavailable (a locked-down browser): the field's value is used directly.
      }
    });
    $("tab-search").addEventListener("click", () => selectTab("search"));
    $("tab-rerank").addEventListener("click", () => selectTab("rerank"));
    $("search-form").addEventListener("submit", (event) => { event.preventDefault(); search(); });
    $("rerank-form").addEventListener("submit", (event) => { event.preventDefault(); rerank(); });

    const params = new URLSearchParams(window.location.search);
    if (params.has("top_k")) $("top-k").value = params.get("top_k");
    if (params.has("floor")) {
      $("floor").value = params.get("floor");
      $("rerank-floor").value = params.get("floor");
    }
    if (params.has("q")) $("q").value = params.get("q");

    const health = await call("health");
    if (health.ok) {
      state.health = health.body;
      const h = health.body;
      const collection = h.collection ? "collection of " + h.collection.documents + " documents" +
        (h.collection.dense ? " (BM25 + dense)" : " (BM25)") : "no collection (rerank only)";
      $("server-info").textContent = "model " + h.model + " \u00b7 " + collection + " \u00b7 default floor " + h.floor;
      if (!$("floor").value) $("floor").placeholder = "default " + h.floor;
      if (!$("rerank-floor").value) $("rerank-floor").placeholder = "default " + h.floor;
      if (!h.collection) {
        $("q").disabled = true;
        $("search-button").disabled = true;
        $("q").placeholder = "This server has no collection (--no-collection): use the Rerank tab";
      }
    } else {
      $("server-info").textContent = "service not reachable";
      showMessage(health.message, true);
    }
    const collection = state.health && state.health.collection;
    selectTab(params.get("tab") === "rerank" || (state.health && !collection) ? "rerank" : "search");
    if (params.get("q") && collection) {
      await search();
    } else {
      document.body.dataset.state = "ready";
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
