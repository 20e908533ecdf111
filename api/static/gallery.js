// sdfarm gallery behaviour. A static file because the Content-Security-Policy allows no inline
// script, style or event handler. Text from the server (prompts above all) is only ever set with
// textContent or as a property, never parsed as HTML from strings.
"use strict";

(function () {
  const POLL_MS = 1000;
  const FINAL = new Set(["succeeded", "failed", "canceled"]);

  async function getJson(url, options) {
    const response = await fetch(url, Object.assign({ headers: { Accept: "application/json" } }, options || {}));
    if (!response.ok) {
      throw new Error(url + " answered " + response.status);
    }
    return response.json();
  }

  // Filters: leave empty fields (and a select at its default) out of the URL, so shared links stay short.
  function dropEmptyFields(form) {
    form.addEventListener("submit", function () {
      for (const element of form.elements) {
        if (!element.name) continue;
        const fallback = element.dataset.default;
        if (element.value === "" || (fallback !== undefined && element.value === fallback)) {
          element.disabled = true;
        }
      }
      // Re-enable after the navigation started, so going back shows the form as it was.
      setTimeout(function () { for (const element of form.elements) element.disabled = false; }, 0);
    });
  }

  // Infinite scroll: when the "older" link comes into view, fetch that page and append its tiles.
  function infiniteScroll(link) {
    const grid = document.getElementById("grid");
    const pager = document.getElementById("pager");
    if (!grid || !pager || !("IntersectionObserver" in window)) return;
    let loading = false;
    const observer = new IntersectionObserver(async function (entries) {
      if (loading || !entries.some(function (entry) { return entry.isIntersecting; })) return;
      const current = pager.querySelector("[data-infinite-scroll]");
      if (!current) { observer.disconnect(); return; }
      loading = true;
      try {
        const response = await fetch(current.href, { headers: { Accept: "text/html" } });
        if (!response.ok) throw new Error("page answered " + response.status);
        // DOMParser never runs scripts; the page is our own, already escaped, markup.
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const tile of page.querySelectorAll("#grid > .tile")) {
          grid.appendChild(document.adoptNode(tile));
        }
        const next = page.querySelector("#pager [data-infinite-scroll]");
        pager.replaceChildren();
        if (next) {
          pager.appendChild(document.adoptNode(next));
          observer.unobserve(current);
          observer.observe(next);
        } else {
          observer.disconnect();
        }
      } catch (error) {
        console.warn("gallery: could not load more images", error);
        observer.disconnect(); // the link still works by hand
      } finally {
        loading = false;
      }
    }, { rootMargin: "600px 0px" });
    observer.observe(link);
  }

  // "Copy parameters": the infotext to the clipboard, with a fallback for insecure origins.
  function copyButton(button) {
    const source = document.getElementById(button.dataset.copyFrom);
    const status = button.parentElement.querySelector(".copy-status");
    button.addEventListener("click", async function () {
      const text = source.value !== undefined ? source.value : source.textContent;
      let copied = false;
      try {
        await navigator.clipboard.writeText(text);
        copied = true;
      } catch (error) {
        source.select();
        copied = document.execCommand && document.execCommand("copy");
      }
      if (status) status.textContent = copied ? "Copied" : "Select the text below and copy it";
    });
  }

  // Jobs page: live progress from each job's event stream, or by polling GET /api/v1/jobs/<id>?images=0.
  function setField(card, name, value) {
    const element = card.querySelector('[data-field="' + name + '"]');
    if (element) element.textContent = String(value);
  }

  function renderThumbnails(card, images) {
    const list = card.querySelector('[data-field="thumbs"]');
    if (!list) return;
    const items = images.filter(function (image) { return image.thumbnail_url; }).map(function (image) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = "/images/" + encodeURIComponent(image.id);
      const picture = document.createElement("img");
      picture.src = image.thumbnail_url;
      picture.alt = image.prompt;
      picture.width = image.width;
      picture.height = image.height;
      picture.decoding = "async";
      link.appendChild(picture);
      item.appendChild(link);
      return item;
    });
    list.replaceChildren.apply(list, items);
  }

  async function refreshThumbnails(card) {
    try {
      const page = await getJson(card.dataset.imagesUrl);
      renderThumbnails(card, page.images);
    } catch (error) {
      console.warn("jobs: thumbnails", error);
    }
  }

  function showJob(card, job) {
    const progress = card.querySelector('[data-field="progress"]');
    const percent = Math.floor(job.progress * 100);
    if (progress) {
      progress.value = job.progress;
      progress.textContent = percent + "%";
    }
    setField(card, "percent", percent + "%");
    for (const name of ["status", "succeeded", "total", "running", "queued", "failed", "canceled"]) {
      setField(card, name, job[name]);
    }
    for (const name of Array.from(card.classList)) {
      if (name.startsWith("status-")) card.classList.remove(name);
    }
    card.classList.add("status-" + job.status);
    const waiting = card.querySelector('[data-field="waiting"]');
    if (waiting) waiting.hidden = !job.waiting_for_worker;
    if (String(job.succeeded) !== card.dataset.succeeded) {
      card.dataset.succeeded = String(job.succeeded);
      refreshThumbnails(card);
    }
    if (FINAL.has(job.status)) {
      card.dataset.live = "false";
      const cancel = card.querySelector("button.cancel");
      if (cancel) cancel.remove();
    }
  }

  function pollJobs(cards) {
    if (!cards.length) return;
    const tick = async function () {
      if (!document.hidden) {
        await Promise.all(cards.filter(function (card) { return card.dataset.live === "true"; }).map(async function (card) {
          try {
            showJob(card, await getJson(card.dataset.jobUrl));
          } catch (error) {
            console.warn("jobs: progress", error);
          }
        }));
      }
      if (cards.some(function (card) { return card.dataset.live === "true"; })) {
        setTimeout(tick, POLL_MS);
      }
    };
    setTimeout(tick, POLL_MS / 2);
  }

  // Live jobs follow their event stream (GET /api/v1/jobs/<id>/events) instead of polling. A browser
  // opens about six connections per host, so only the first few jobs stream; the rest, and any job
  // whose stream is refused (503: the server's streams are busy), are polled.
  const MAX_STREAMS = 3;

  function followJobs() {
    const cards = Array.from(document.querySelectorAll('article.job[data-live="true"]'));
    const polled = [];
    cards.forEach(function (card, index) {
      if (index >= MAX_STREAMS || !window.EventSource || !card.dataset.eventsUrl) {
        polled.push(card);
        return;
      }
      const source = new EventSource(card.dataset.eventsUrl);
      card.dataset.streaming = "true";
      source.addEventListener("progress", function (event) { showJob(card, JSON.parse(event.data)); });
      source.addEventListener("end", function () { source.close(); });
      source.addEventListener("error", function () {
        // A stream that ends after its time limit reconnects by itself; a refused one is closed.
        if (source.readyState === EventSource.CLOSED && card.dataset.live === "true") {
          card.dataset.streaming = "false";
          pollJobs([card]);
        }
      });
    });
    pollJobs(polled);
  }

  function cancelButton(button) {
    button.addEventListener("click", async function () {
      button.disabled = true;
      button.textContent = "Canceling…";
      const card = button.closest("article.job");
      try {
        showJob(card, await getJson(button.dataset.cancelUrl, { method: "POST" }));
      } catch (error) {
        button.disabled = false;
        button.textContent = "Cancel";
        console.warn("jobs: cancel", error);
      }
    });
  }

  // The job form: the placeholders of left-out fields show the chosen model's defaults.
  function modelDefaults(form) {
    const defaults = JSON.parse(form.dataset.modelDefaults || "{}");
    const choice = form.querySelector("[data-model-choice]");
    if (!choice) return;
    const show = function () {
      const chosen = defaults[choice.value || form.dataset.defaultModel];
      if (!chosen) return;
      for (const name of ["steps", "guidance_scale", "width", "height"]) {
        const input = form.querySelector('[name="' + name + '"]');
        if (input) input.placeholder = String(chosen[name]);
      }
      const sampler = form.querySelector('select[name="scheduler"] option[value=""]');
      if (sampler) sampler.textContent = "model default (" + chosen.sampler + ")";
    };
    choice.addEventListener("change", show);
    show();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-drop-empty]").forEach(dropEmptyFields);
    document.querySelectorAll("form[data-model-defaults]").forEach(modelDefaults);
    document.querySelectorAll("[data-infinite-scroll]").forEach(infiniteScroll);
    document.querySelectorAll("button[data-copy-from]").forEach(copyButton);
    document.querySelectorAll("button[data-cancel-url]").forEach(cancelButton);
    followJobs();
  });
})();
