// sdfarm curation: ratings, selection, bulk actions, boards (made, filled, renamed), delete and undo,
// keyboard on the image page.
// A static file (the Content-Security-Policy allows no inline script). It only calls the JSON API;
// server text is set with textContent, never parsed as HTML.
"use strict";

(function () {
  const FLASH_KEY = "sdfarm-flash";
  const BULK_URL = "/api/v1/images/bulk";

  async function api(method, url, body) {
    const response = await fetch(url, {
      method: method,
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(function () { return {}; });
    if (!response.ok) {
      const error = data.error || {};
      const fields = (error.fields || []).map(function (f) { return f.field + ": " + f.reason; });
      throw new Error(fields.join("; ") || error.message || "the farm answered " + response.status);
    }
    return data;
  }

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  // The message line, with an Undo button after a delete. A message meant for the next page (after a
  // reload or a move to the next image) waits in sessionStorage.
  function showFlash(message, undo) {
    const flash = document.getElementById("flash");
    if (!flash) return;
    flash.querySelector('[data-field="message"]').textContent = message;
    const downloads = flash.querySelector(".downloads");
    if (downloads) downloads.replaceChildren();
    // A fresh button each time drops the listener of an earlier message.
    const button = flash.querySelector("button.undo").cloneNode(true);
    flash.querySelector("button.undo").replaceWith(button);
    button.hidden = !undo;
    if (undo) {
      button.addEventListener("click", function () { undoDelete(undo); }, { once: true });
    }
    flash.dataset.undo = undo ? JSON.stringify(undo) : "";
    flash.classList.remove("error");
    flash.hidden = false;
  }

  function showError(error) {
    const flash = document.getElementById("flash");
    if (!flash) return;
    showFlash(String(error.message || error), null);
    flash.classList.add("error");
  }

  function flashNextPage(message, undo) {
    sessionStorage.setItem(FLASH_KEY, JSON.stringify({ message: message, undo: undo || null }));
  }

  function restoreFlash() {
    const saved = sessionStorage.getItem(FLASH_KEY);
    if (!saved) return;
    sessionStorage.removeItem(FLASH_KEY);
    try {
      const parsed = JSON.parse(saved);
      showFlash(parsed.message, parsed.undo);
    } catch (error) {
      console.warn("curation: flash", error);
    }
  }

  // undo = {deletion_id, back}: restore that delete, then show `back` (the restored image) or reload.
  async function undoDelete(undo) {
    try {
      const result = await api("POST", BULK_URL, { action: "restore", deletion_id: undo.deletion_id });
      flashNextPage(plural(result.matched, "image") + " restored");
      if (undo.back) {
        window.location.assign(undo.back);
      } else {
        window.location.reload();
      }
    } catch (error) {
      showError(error);
    }
  }

  function pendingUndo() {
    const flash = document.getElementById("flash");
    if (!flash || flash.hidden || !flash.dataset.undo) return null;
    return JSON.parse(flash.dataset.undo);
  }

  function showRating(element, rating) {
    element.dataset.rating = String(rating);
    element.querySelectorAll("[data-rate]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.rate) === rating));
    });
  }

  // A star or reject button: pressing the pressed one clears the rating.
  async function rateImage(imageId, element, value) {
    const current = Number(element.dataset.rating || 0);
    const rating = current === value ? 0 : value;
    const image = await api("PATCH", "/api/v1/images/" + encodeURIComponent(imageId), { rating: rating });
    showRating(element, image.rating);
    return image.rating;
  }

  // ---- The gallery: selection (click, shift-click ranges, all matching the query) and bulk actions.
  function gallery(bar) {
    const grid = document.getElementById("grid");
    if (!grid) return;
    const query = JSON.parse(bar.dataset.query || "{}");
    const selected = new Set();
    let matching = false; // every image the view's query matches, loaded or not: actions send the query
    let anchor = null;

    function tiles() { return Array.from(grid.querySelectorAll(".tile")); }

    function render() {
      for (const tile of tiles()) {
        const on = matching || selected.has(tile.dataset.imageId);
        tile.classList.toggle("selected", on);
        const box = tile.querySelector(".pick input");
        if (box) box.checked = on;
      }
      const count = bar.querySelector('[data-field="selected"]');
      if (matching) {
        count.textContent = "All images matching this view selected";
      } else {
        count.textContent = selected.size ? plural(selected.size, "image") + " selected" : "No images selected";
      }
      const any = matching || selected.size > 0;
      bar.querySelector(".bulk").hidden = !any;
      bar.querySelector('[data-select="none"]').hidden = !any;
      bar.classList.toggle("active", any);
      const compare = bar.querySelector("[data-compare]");
      if (compare) compare.hidden = matching || selected.size !== 2;
    }

    function leaveMatching() {
      if (!matching) return;
      matching = false;
      for (const tile of tiles()) selected.add(tile.dataset.imageId);
    }

    grid.addEventListener("click", async function (event) {
      const box = event.target.closest(".pick input");
      if (box) {
        const tile = box.closest(".tile");
        leaveMatching();
        const all = tiles();
        if (event.shiftKey && anchor && all.includes(anchor)) {
          // A range from the last clicked tile to this one takes this box's new state.
          const [from, to] = [all.indexOf(anchor), all.indexOf(tile)].sort(function (a, b) { return a - b; });
          for (const item of all.slice(from, to + 1)) {
            if (box.checked) selected.add(item.dataset.imageId); else selected.delete(item.dataset.imageId);
          }
        } else if (box.checked) {
          selected.add(tile.dataset.imageId);
        } else {
          selected.delete(tile.dataset.imageId);
        }
        anchor = tile;
        render();
        return;
      }
      const rate = event.target.closest(".tile [data-rate]");
      if (rate) {
        event.preventDefault();
        const tile = rate.closest(".tile");
        try {
          await rateImage(tile.dataset.imageId, tile, Number(rate.dataset.rate));
        } catch (error) {
          showError(error);
        }
      }
    });

    // Tiles that infinite scroll adds join an "all matching" selection.
    new MutationObserver(render).observe(grid, { childList: true });

    bar.addEventListener("click", function (event) {
      const choice = event.target.closest("[data-select]");
      if (choice) {
        if (choice.dataset.select === "page") {
          leaveMatching();
          for (const tile of tiles()) selected.add(tile.dataset.imageId);
        } else if (choice.dataset.select === "matching") {
          selected.clear();
          matching = true;
        } else {
          selected.clear();
          matching = false;
        }
        render();
        return;
      }
      const action = event.target.closest("[data-bulk]");
      if (action) bulk(action);
      if (event.target.closest("[data-export]")) exportSelection(event.target.closest("[data-export]"));
      if (event.target.closest("[data-compare]")) {
        window.location.assign("/compare?ids=" + Array.from(selected).join(","));
      }
    });

    const boardChoice = bar.querySelector(".board-choice");
    const newBoard = bar.querySelector(".new-board");
    if (boardChoice && newBoard) {
      const toggle = function () { newBoard.hidden = boardChoice.value !== "new"; };
      boardChoice.addEventListener("change", toggle);
      toggle();
    }

    async function chosenBoard(create) {
      if (boardChoice.value !== "new") {
        return { id: Number(boardChoice.value), name: boardChoice.selectedOptions[0].textContent };
      }
      if (!create) throw new Error("choose a board to remove the images from");
      const board = await api("POST", "/api/v1/boards", { name: newBoard.value });
      return { id: board.id, name: board.name };
    }

    // Export: the selection's ids, or the view's filters in the export API's names (never a list of rows).
    function exportFilters() {
      const names = { q: "q", model: "model", size: "size", seed: "seed", job: "job_id", board: "board_id", from: "date_from", to: "date_to" };
      const body = {};
      for (const [name, value] of Object.entries(query)) {
        if (name === "rating") {
          if (value === "not-rejected") throw new Error("rating: an export takes one rating (starred, not rated or rejected)");
          body.rating = Number(value);
        } else if (name in names) {
          body[names[name]] = ["seed", "job", "board"].includes(name) ? Number(value) : value;
        }
      }
      if (!Object.keys(body).length) body.all = true;
      return body;
    }

    async function exportSelection(button) {
      try {
        const body = matching ? exportFilters() : { image_ids: Array.from(selected, Number) };
        body.format = bar.querySelector(".export-format").value;
        button.disabled = true;
        const created = await api("POST", "/api/v1/exports", body);
        showFlash("Export " + created.id + " queued", null);
        followExport(created.url);
      } catch (error) {
        showError(error);
      } finally {
        button.disabled = false;
      }
    }

    async function bulk(button) {
      const body = matching ? { query: query } : { image_ids: Array.from(selected, Number) };
      body.action = button.dataset.bulk;
      let message;
      try {
        if (body.action === "rate") {
          body.rating = Number(button.dataset.rating);
        } else if (body.action === "add_to_board" || body.action === "remove_from_board") {
          const board = await chosenBoard(body.action === "add_to_board");
          body.board_id = board.id;
          message = body.action === "add_to_board" ? " added to " + board.name : " removed from " + board.name;
        }
        button.disabled = true;
        const result = await api("POST", BULK_URL, body);
        const count = plural(result.matched, "image");
        const done = {
          rate: { "1": count + " starred", "-1": count + " rejected", "0": count + " no longer rated" }[String(body.rating)],
          add_to_board: count + message,
          remove_from_board: count + message,
          delete: count + " deleted",
          restore: count + " restored",
        }[body.action];
        const undo = result.deletion_id ? { deletion_id: result.deletion_id } : null;
        flashNextPage(done, undo);
        window.location.reload();
      } catch (error) {
        button.disabled = false;
        showError(error);
      }
    }

    render();
  }

  // An export runs on the worker side: poll it, then offer its files.
  async function followExport(url) {
    const flash = document.getElementById("flash");
    const message = flash.querySelector('[data-field="message"]');
    const downloads = flash.querySelector(".downloads");
    downloads.replaceChildren();
    for (;;) {
      const state = await api("GET", url);
      if (state.status === "failed") {
        showError(new Error("Export " + state.id + " failed: " + (state.error || "see the worker's log")));
        return;
      }
      if (state.status === "succeeded") {
        message.textContent = "Export " + state.id + " ready: " + plural(state.images, "image") + ".";
        for (const file of state.files) {
          const link = document.createElement("a");
          link.href = file.url;
          link.textContent = file.name;
          link.setAttribute("download", "");
          downloads.append(" ", link);
        }
        return;
      }
      message.textContent = "Export " + state.id + ": " + state.status + ", " + Math.floor(state.progress * 100) + "%";
      await new Promise(function (resolve) { setTimeout(resolve, 1000); });
    }
  }

  // 1:1: the picture pixel for pixel, scrolling inside its frame when larger than the page.
  function zoom() {
    const figure = document.getElementById("full");
    if (!figure) return;
    const on = figure.classList.toggle("actual-size");
    const button = document.querySelector("[data-zoom]");
    if (button) button.setAttribute("aria-pressed", String(on));
  }

  // ---- One image: rating, boards, delete and restore, and the keyboard.
  function imagePage(panel) {
    const imageId = Number(panel.dataset.imageId);
    const urls = { newer: panel.dataset.newerUrl, older: panel.dataset.olderUrl, gallery: panel.dataset.galleryUrl };

    async function rate(value) {
      try {
        const rating = value === 0 ? await setRating(0) : await rateImage(imageId, panel, value);
        showFlash({ "1": "Starred", "-1": "Rejected", "0": "Rating cleared" }[String(rating)], null);
      } catch (error) {
        showError(error);
      }
    }

    async function setRating(rating) {
      const image = await api("PATCH", "/api/v1/images/" + imageId, { rating: rating });
      showRating(panel, image.rating);
      return image.rating;
    }

    async function remove() {
      if (panel.dataset.deleted === "true") return;
      try {
        const result = await api("POST", BULK_URL, { action: "delete", image_ids: [imageId] });
        if (!result.matched) throw new Error("this image cannot be deleted while its job still renders it");
        const undo = { deletion_id: result.deletion_id, back: window.location.pathname + window.location.search };
        flashNextPage("Image " + imageId + " deleted", undo);
        window.location.assign(urls.older || urls.newer || urls.gallery);
      } catch (error) {
        showError(error);
      }
    }

    async function restore() {
      try {
        await api("POST", BULK_URL, { action: "restore", image_ids: [imageId] });
        flashNextPage("Image " + imageId + " restored");
        window.location.reload();
      } catch (error) {
        showError(error);
      }
    }

    panel.addEventListener("click", function (event) {
      const rateButton = event.target.closest("[data-rate]");
      if (rateButton) rate(Number(rateButton.dataset.rate));
      const action = event.target.closest("[data-image-action]");
      if (action && action.dataset.imageAction === "delete") remove();
      if (action && action.dataset.imageAction === "restore") restore();
    });

    panel.querySelectorAll("input[data-board-id]").forEach(function (box) {
      box.addEventListener("change", async function () {
        const url = "/api/v1/boards/" + encodeURIComponent(box.dataset.boardId) + "/images";
        try {
          await api(box.checked ? "POST" : "DELETE", url, { image_ids: [imageId] });
          const name = box.parentElement.textContent.trim();
          showFlash((box.checked ? "Added to " : "Removed from ") + name, null);
        } catch (error) {
          box.checked = !box.checked;
          showError(error);
        }
      });
    });

    document.addEventListener("keydown", function (event) {
      if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.target.closest("input, textarea, select, [contenteditable]")) return;
      const moves = { ArrowLeft: urls.newer, ArrowRight: urls.older };
      if (event.key in moves) {
        if (moves[event.key]) window.location.assign(moves[event.key]);
        event.preventDefault();
        return;
      }
      const keys = {
        z: zoom,
        s: function () { rate(1); },
        x: function () { rate(-1); },
        "0": function () { rate(0); },
        Delete: remove,
        u: function () { const undo = pendingUndo(); if (undo) undoDelete(undo); },
      };
      const handler = keys[event.key];
      if (handler) {
        event.preventDefault();
        handler();
      }
    });
  }

  // ---- The board the gallery is filtered by: rename it.
  function boardBar(form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const url = "/api/v1/boards/" + encodeURIComponent(form.dataset.boardId);
      try {
        const board = await api("PATCH", url, { name: form.elements.name.value });
        flashNextPage("Board renamed to " + board.name);
        window.location.reload();
      } catch (error) {
        showError(error);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    restoreFlash();
    const bar = document.getElementById("selection-bar");
    if (bar) gallery(bar);
    const boardForm = document.getElementById("board-bar");
    if (boardForm) boardBar(boardForm);
    const panel = document.getElementById("curate");
    if (panel) imagePage(panel);
    const zoomButton = document.querySelector("[data-zoom]");
    if (zoomButton) zoomButton.addEventListener("click", zoom);
  });
})();
