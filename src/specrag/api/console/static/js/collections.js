// The Collections view: each collection's documents, kinds and current version, its
// latest build with a live progress bar (polling GET /jobs/{id}), and a Build button.
import { api } from "./api.js";
import { h, showError } from "./dom.js";

const POLL_MS = 250;
const FINISHED = new Set(["succeeded", "failed"]);

export class CollectionsView {
  constructor(state, onChanged) {
    this.state = state;
    this.onChanged = onChanged; // reload the collection list (a build moved a version)
    this.body = document.querySelector("#collections-table tbody");
    this.error = document.getElementById("collections-error");
    this.builds = new Map(); // collection -> {job, seen: [progress...]}
    this.polling = new Set(); // job ids being polled
  }

  render(collections) {
    this.body.replaceChildren(
      ...collections.map((c) => {
        const button = h("button", { type: "button", class: "build", "aria-label": `Build ${c.name}`, onclick: () => this.startBuild(c.name) }, "Build");
        return h(
          "tr",
          { dataset: { collection: c.name } },
          h("th", { scope: "row" }, c.name),
          h("td", { class: "num" }, c.n_documents.toLocaleString("en")),
          h("td", {}, Object.keys(c.kinds).join(", ")),
          h("td", {}, h("code", {}, c.current_version || "not built")),
          h("td", { class: "build-cell" }, button, h("div", { class: "job" })),
        );
      }),
    );
    if (!collections.length) {
      this.body.append(h("tr", {}, h("td", { colspan: 5 }, "No collections yet: create one with POST /collections, or run `specrag demo`.")));
    }
    for (const c of collections) {
      if (this.builds.has(c.name)) this.showJob(c.name);
      else this.loadLatestJob(c.name);
    }
  }

  async loadLatestJob(name) {
    try {
      const jobs = await api("GET", `/collections/${encodeURIComponent(name)}/builds`);
      if (!jobs.length) return;
      this.track(jobs[0]); // newest first
    } catch (err) {
      showError(this.error, err);
    }
  }

  async startBuild(name) {
    showError(this.error, null);
    try {
      const job = await api("POST", `/collections/${encodeURIComponent(name)}/builds`);
      this.builds.delete(name);
      this.track(job);
    } catch (err) {
      showError(this.error, err);
    }
  }

  track(job) {
    const entry = this.builds.get(job.collection) || { job, seen: [] };
    if (entry.job.id !== job.id) entry.seen = [];
    entry.job = job;
    entry.seen.push(job.progress ?? 0);
    this.builds.set(job.collection, entry);
    this.showJob(job.collection);
    if (!FINISHED.has(job.status) && !this.polling.has(job.id)) this.poll(job.id);
  }

  async poll(jobId) {
    this.polling.add(jobId);
    try {
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        const job = await api("GET", `/jobs/${encodeURIComponent(jobId)}`);
        this.track(job);
        if (FINISHED.has(job.status)) {
          if (job.status === "succeeded") this.onChanged();
          return;
        }
      }
    } catch (err) {
      showError(this.error, err);
    } finally {
      this.polling.delete(jobId);
    }
  }

  showJob(name) {
    const row = [...this.body.querySelectorAll("tr")].find((r) => r.dataset.collection === name);
    const entry = this.builds.get(name);
    if (!row || !entry) return;
    const { job, seen } = entry;
    const cell = row.querySelector(".job");
    const progress = FINISHED.has(job.status) && job.status === "succeeded" ? 1 : job.progress ?? 0;
    const id = `progress-${name}`;
    const label = job.status === "failed" ? `failed: ${job.error || job.message || "no message"}` : `${job.status}${job.stage && job.stage !== job.status ? ` · ${job.stage}` : ""} · ${Math.round(progress * 100)}%`;
    cell.dataset.status = job.status;
    cell.dataset.seen = seen.join(",");
    cell.replaceChildren(
      h("progress", { id, class: "build-progress", max: 1, value: progress, "aria-label": `Build of ${name}` }),
      h("span", { class: job.status === "failed" ? "job-label error" : "job-label", role: "status" }, label),
    );
  }
}
