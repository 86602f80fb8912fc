// EasyPhoto garment layout editor (issue 16): paint a semantic layout (one FGVC6 class per pixel) in the browser,
// download it as a palette PNG, or send it to POST <api>/design and show the garment the job draws.
//
// The layout is kept as labels (a Uint8Array, one byte per pixel: 0..45 a class, 255 background), as
// easyphoto/design/layout.py stores it, and every tool writes labels with integer pixel operations: no canvas
// stroke, no smoothing, so the downloaded PNG holds palette colours only and read_layout gives back exactly the
// painted labels. The palette comes from GET <api>/design/palette (layout.PALETTE), never from a copy in this file.
//
// The WebUI loads every javascript/*.js of an extension into its page: nothing here runs until called, and the only
// global is window.EasyPhotoLayout.
(function () {
    "use strict";

    const DEFAULT_API = "/easyphoto/v1";
    const BACKGROUND = 255;
    const MIN_SIDE = 64;  // as layout.MIN_SIDE / MAX_SIDE: the server refuses other sizes
    const MAX_SIDE = 2048;
    const HISTORY = 30;  // undo levels (a 256×256 layout is 64 KiB a level)
    const FINAL = ["succeeded", "failed", "cancelled"];
    const POLL_MS = 500;
    const TRACED_ALPHA = 170;  // classes over a tracing photo: let the photo show through

    async function errorText(response) {
        try {
            const body = await response.json();
            return [body.message, body.hint].filter(Boolean).join(" ") || response.status + " " + response.statusText;
        } catch (error) {
            return response.status + " " + response.statusText;
        }
    }

    function describeError(error) {
        if (!error) return "no reason given";
        return [error.message, error.hint].filter(Boolean).join(" ") || JSON.stringify(error);
    }

    function sleep(ms) {
        return new Promise((resolve) => setTimeout(resolve, ms));
    }

    function colourKey(r, g, b) {
        return (r << 16) | (g << 8) | b;
    }

    // The server's palette: each label's colour, and each colour's label (for palette PNGs).
    class Palette {
        constructor(entries) {
            this.entries = entries;
            this.colours = new Map();
            this.labels = new Map();
            entries.forEach((entry) => {
                this.colours.set(entry.id, entry.rgb);
                this.labels.set(colourKey(entry.rgb[0], entry.rgb[1], entry.rgb[2]), entry.id);
            });
            this.classCount = entries.filter((entry) => entry.id !== BACKGROUND).length;
        }

        colour(label) {
            return this.colours.get(label);
        }

        name(label) {
            const entry = this.entries.find((e) => e.id === label);
            return entry ? entry.name : String(label);
        }
    }

    async function fetchPalette(api) {
        const response = await fetch(api + "/design/palette", {credentials: "same-origin"});
        if (!response.ok) throw new Error(await errorText(response));
        return new Palette(await response.json());
    }

    function checkSize(width, height) {
        if (!Number.isInteger(width) || !Number.isInteger(height) || Math.min(width, height) < MIN_SIDE ||
            Math.max(width, height) > MAX_SIDE) {
            throw new Error("A layout is " + MIN_SIDE + "–" + MAX_SIDE + " px on each side, not " + width + "×" +
                height + ".");
        }
    }

    // Labels of decoded RGBA pixels. An image grey everywhere is a label PNG (grey value = label); any other is a
    // palette PNG (white = background). What fits neither is refused by its first position, as read_layout does.
    function labelsFromPixels(data, width, height, palette) {
        const count = width * height;
        let grey = true;
        for (let i = 0; i < count; i++) {
            const p = 4 * i;
            if (data[p + 3] !== 255) {
                throw new Error("The layout has transparent pixels (first at x=" + (i % width) + ", y=" +
                    Math.floor(i / width) + "): save it without transparency.");
            }
            if (data[p] !== data[p + 1] || data[p + 1] !== data[p + 2]) grey = false;
        }
        const labels = new Uint8Array(count);
        let bad = 0;
        let first = -1;
        for (let i = 0; i < count; i++) {
            const p = 4 * i;
            const label = grey ? data[p] : palette.labels.get(colourKey(data[p], data[p + 1], data[p + 2]));
            const known = label !== undefined && (label < palette.classCount || label === BACKGROUND);
            if (!known) {
                bad++;
                if (first < 0) first = i;
                continue;
            }
            labels[i] = label;
        }
        if (bad) {
            const p = 4 * first;
            const where = "first at x=" + (first % width) + ", y=" + Math.floor(first / width);
            throw new Error(grey
                ? bad + " pixels of the label PNG are not labels 0–" + (palette.classCount - 1) + " or " +
                  BACKGROUND + " (" + where + ": " + data[p] + ")."
                : bad + " pixels are not palette colours (" + where + ": rgb(" + data[p] + ", " + data[p + 1] +
                  ", " + data[p + 2] + ")): paint with this editor's palette, or open a label PNG.");
        }
        return labels;
    }

    // The pixels of an image file exactly as stored: no colour management, no premultiplied alpha.
    async function filePixels(blob) {
        const bitmap = await createImageBitmap(blob, {colorSpaceConversion: "none", premultiplyAlpha: "none"});
        const canvas = document.createElement("canvas");
        canvas.width = bitmap.width;
        canvas.height = bitmap.height;
        const context = canvas.getContext("2d", {willReadFrequently: true});
        context.drawImage(bitmap, 0, 0);
        const pixels = context.getImageData(0, 0, bitmap.width, bitmap.height);
        if (bitmap.close) bitmap.close();
        return pixels;
    }

    // Brush offsets of a round brush `size` pixels across (integer pixels, no anti-aliasing).
    function brushOffsets(size) {
        const low = -Math.floor(size / 2);
        const centre = low + (size - 1) / 2;
        const offsets = [];
        for (let dy = low; dy < low + size; dy++) {
            for (let dx = low; dx < low + size; dx++) {
                if ((dx - centre) ** 2 + (dy - centre) ** 2 <= (size / 2) ** 2) offsets.push([dx, dy]);
            }
        }
        return offsets;
    }

    // The labels, their undo history and the tools; drawn into `canvas` at its own size (CSS zooms it).
    class LayoutEditor {
        constructor(canvas, palette, api, onStatus) {
            this.canvas = canvas;
            this.palette = palette;
            this.api = api || DEFAULT_API;
            this.onStatus = onStatus || function () {};
            this.current = 0;  // the class the tools paint
            this.tool = "brush";  // brush, rect, fill or eraser
            this.brushSize = 8;
            this.zoom = 1;
            this.traced = false;
            this.history = [];
            this.stroke = null;
            this.options = {};  // more POST /design fields (base, garment_id, config.steps...): over the page's
            this.busy = false;
            this.generated = false;
            this.error = null;
            this.job = null;
            this.results = [];
            this.setLabels(canvas.width, canvas.height, null);
            canvas.addEventListener("pointerdown", (event) => this.pointerDown(event));
            canvas.addEventListener("pointermove", (event) => this.pointerMove(event));
            canvas.addEventListener("pointerup", (event) => this.pointerUp(event));
            canvas.addEventListener("pointercancel", (event) => this.pointerUp(event));
        }

        // ------------------------------------------------------------------ state and history

        setLabels(width, height, labels) {
            this.width = width;
            this.height = height;
            this.labels = labels || new Uint8Array(width * height).fill(BACKGROUND);
            this.canvas.width = width;
            this.canvas.height = height;
            this.view = this.canvas.getContext("2d").createImageData(width, height);
            this.setZoom(this.zoom);
            this.render();
        }

        remember() {
            this.history.push({width: this.width, height: this.height, labels: this.labels.slice()});
            if (this.history.length > HISTORY) this.history.shift();
        }

        undo() {
            const last = this.history.pop();
            if (!last) return false;
            this.stroke = null;
            if (last.width === this.width && last.height === this.height) {
                this.labels = last.labels;
                this.render();
            } else {
                this.setLabels(last.width, last.height, last.labels);
            }
            return true;
        }

        resize(width, height) {
            checkSize(width, height);
            this.remember();
            this.setLabels(width, height, null);
        }

        clear() {
            this.remember();
            this.labels.fill(BACKGROUND);
            this.render();
        }

        // Opens a label PNG or a palette PNG (a File or Blob) as the layout, at its own size; one undo step.
        async open(blob) {
            const pixels = await filePixels(blob);
            checkSize(pixels.width, pixels.height);
            const labels = labelsFromPixels(pixels.data, pixels.width, pixels.height, this.palette);
            this.remember();
            this.setLabels(pixels.width, pixels.height, labels);
        }

        label(x, y) {
            return this.labels[y * this.width + x];
        }

        counts() {
            const counts = {};
            this.labels.forEach((label) => {
                counts[label] = (counts[label] || 0) + 1;
            });
            return counts;
        }

        // ------------------------------------------------------------------ tools (each call is one undo step)

        paintRect(x0, y0, x1, y1, label) {
            this.remember();
            this.fillRect(x0, y0, x1, y1, label === undefined ? this.current : label);
            this.render();
        }

        paintStroke(points, label, size) {
            if (!points.length) return;
            this.remember();
            const value = label === undefined ? this.current : label;
            const offsets = brushOffsets(size || this.brushSize);
            this.stamp(points[0][0], points[0][1], value, offsets);
            for (let i = 1; i < points.length; i++) {
                this.line(points[i - 1][0], points[i - 1][1], points[i][0], points[i][1], value, offsets);
            }
            this.render();
        }

        fill(x, y, label) {
            const value = label === undefined ? this.current : label;
            if (this.label(x, y) === value) return false;
            this.remember();
            this.flood(x, y, value);
            this.render();
            return true;
        }

        fillRect(x0, y0, x1, y1, label) {
            const left = Math.max(0, Math.min(x0, x1));
            const right = Math.min(this.width - 1, Math.max(x0, x1));
            const top = Math.max(0, Math.min(y0, y1));
            const bottom = Math.min(this.height - 1, Math.max(y0, y1));
            for (let y = top; y <= bottom; y++) {
                this.labels.fill(label, y * this.width + left, y * this.width + right + 1);
            }
        }

        stamp(cx, cy, label, offsets) {
            offsets.forEach(([dx, dy]) => {
                const x = cx + dx;
                const y = cy + dy;
                if (x >= 0 && y >= 0 && x < this.width && y < this.height) this.labels[y * this.width + x] = label;
            });
        }

        // Stamps the brush on every pixel of the line (Bresenham): a fast drag leaves no gaps.
        line(x0, y0, x1, y1, label, offsets) {
            const dx = Math.abs(x1 - x0);
            const dy = -Math.abs(y1 - y0);
            const sx = x0 < x1 ? 1 : -1;
            const sy = y0 < y1 ? 1 : -1;
            let error = dx + dy;
            let x = x0;
            let y = y0;
            for (;;) {
                this.stamp(x, y, label, offsets);
                if (x === x1 && y === y1) return;
                const twice = 2 * error;
                if (twice >= dy) {
                    error += dy;
                    x += sx;
                }
                if (twice <= dx) {
                    error += dx;
                    y += sy;
                }
            }
        }

        // 4-connected flood fill of the region of (x, y)'s label, by row spans.
        flood(x, y, label) {
            const target = this.label(x, y);
            const width = this.width;
            const stack = [[x, y]];
            while (stack.length) {
                const [sx, sy] = stack.pop();
                const row = sy * width;
                if (this.labels[row + sx] !== target) continue;
                let left = sx;
                let right = sx;
                while (left > 0 && this.labels[row + left - 1] === target) left--;
                while (right < width - 1 && this.labels[row + right + 1] === target) right++;
                this.labels.fill(label, row + left, row + right + 1);
                for (const ny of [sy - 1, sy + 1]) {
                    if (ny < 0 || ny >= this.height) continue;
                    for (let nx = left; nx <= right; nx++) {
                        if (this.labels[ny * width + nx] === target &&
                            (nx === left || this.labels[ny * width + nx - 1] !== target)) stack.push([nx, ny]);
                    }
                }
            }
        }

        // ------------------------------------------------------------------ the mouse

        pixel(event) {
            // offsetX/Y: from the padding box's corner (border excluded); clientWidth: the shown size (zoom)
            const x = Math.floor(event.offsetX * this.width / this.canvas.clientWidth);
            const y = Math.floor(event.offsetY * this.height / this.canvas.clientHeight);
            return [Math.min(Math.max(x, 0), this.width - 1), Math.min(Math.max(y, 0), this.height - 1)];
        }

        pointerDown(event) {
            if (event.button !== 0) return;
            event.preventDefault();
            this.canvas.setPointerCapture(event.pointerId);
            const [x, y] = this.pixel(event);
            if (this.tool === "fill") {
                this.fill(x, y);
            } else if (this.tool === "rect") {
                this.stroke = {start: [x, y], end: [x, y]};
                this.preview();
            } else {
                const label = this.tool === "eraser" ? BACKGROUND : this.current;
                this.remember();
                this.stroke = {last: [x, y], label: label, offsets: brushOffsets(this.brushSize)};
                this.stamp(x, y, label, this.stroke.offsets);
                this.render();
            }
        }

        pointerMove(event) {
            if (!this.stroke) return;
            const [x, y] = this.pixel(event);
            if (this.stroke.start) {
                this.stroke.end = [x, y];
                this.preview();
                return;
            }
            const [lx, ly] = this.stroke.last;
            this.line(lx, ly, x, y, this.stroke.label, this.stroke.offsets);
            this.stroke.last = [x, y];
            this.render();
        }

        pointerUp(event) {
            if (!this.stroke) return;
            if (this.stroke.start) {
                if (event.type === "pointerup") this.stroke.end = this.pixel(event);
                const [x0, y0] = this.stroke.start;
                const [x1, y1] = this.stroke.end;
                this.stroke = null;
                this.paintRect(x0, y0, x1, y1);
                return;
            }
            this.stroke = null;
        }

        // ------------------------------------------------------------------ drawing

        setZoom(zoom) {
            this.zoom = zoom;
            this.canvas.style.width = this.width * zoom + "px";
            this.canvas.style.height = this.height * zoom + "px";
            if (this.tracing) {
                this.tracing.style.width = this.width * zoom + "px";
                this.tracing.style.height = this.height * zoom + "px";
            }
        }

        // A photo shown under the canvas to trace over (an <img>, or null): only shown, never sent.
        setTracing(image) {
            this.tracing = image;
            this.traced = Boolean(image);
            this.setZoom(this.zoom);
            this.render();
        }

        render(labels) {
            const source = labels || this.labels;
            const data = this.view.data;
            const alpha = this.traced ? TRACED_ALPHA : 255;
            for (let i = 0; i < source.length; i++) {
                const p = 4 * i;
                if (source[i] === BACKGROUND) {
                    data[p + 3] = 0;  // the stage's white, or the tracing photo, shows through
                    continue;
                }
                const rgb = this.palette.colour(source[i]);
                data[p] = rgb[0];
                data[p + 1] = rgb[1];
                data[p + 2] = rgb[2];
                data[p + 3] = alpha;
            }
            this.canvas.getContext("2d").putImageData(this.view, 0, 0);
        }

        preview() {
            const labels = this.labels;
            this.labels = labels.slice();
            const [x0, y0] = this.stroke.start;
            const [x1, y1] = this.stroke.end;
            this.fillRect(x0, y0, x1, y1, this.current);
            const shown = this.labels;
            this.labels = labels;
            this.render(shown);
        }

        // ------------------------------------------------------------------ the palette PNG

        // Opaque RGBA in the palette (background white): what Download saves and Generate sends.
        layoutPixels() {
            const pixels = new ImageData(this.width, this.height);
            for (let i = 0; i < this.labels.length; i++) {
                const rgb = this.palette.colour(this.labels[i]);
                pixels.data[4 * i] = rgb[0];
                pixels.data[4 * i + 1] = rgb[1];
                pixels.data[4 * i + 2] = rgb[2];
                pixels.data[4 * i + 3] = 255;
            }
            return pixels;
        }

        layoutDataUrl() {
            const canvas = document.createElement("canvas");
            canvas.width = this.width;
            canvas.height = this.height;
            canvas.getContext("2d").putImageData(this.layoutPixels(), 0, 0);
            return canvas.toDataURL("image/png");
        }

        layoutBase64() {
            return this.layoutDataUrl().split(",", 2)[1];
        }

        // ------------------------------------------------------------------ Generate

        // POST /design with the layout and `fields` ({config: {route, prompt, ...}}, then this.options over them:
        // base, garment_id, more config), follow the job until it ends, then its image URLs
        // (GET /jobs/{id}/result?images=files).
        async generate(fields) {
            if (this.busy) throw new Error("A layout is already being generated.");
            if (!this.labels.some((label) => label !== BACKGROUND)) {
                throw new Error("The layout is empty: paint at least one class first.");
            }
            this.busy = true;
            this.generated = false;
            this.error = null;
            this.results = [];
            try {
                const body = mergeFields(mergeFields({layout: this.layoutBase64()}, fields), this.options);
                let job = await this.request("/design", {method: "POST", body: JSON.stringify(body)});
                this.job = job;
                while (!FINAL.includes(job.state)) {
                    this.onStatus(progressText(job));
                    await sleep(POLL_MS);
                    job = await this.request("/jobs/" + encodeURIComponent(job.id));
                    this.job = job;
                }
                if (job.state !== "succeeded") {
                    throw new Error("The design job " + job.state + ": " + describeError(job.error));
                }
                const result = await this.request("/jobs/" + encodeURIComponent(job.id) + "/result?images=files");
                this.results = (result.images || []).map((url) => this.apiUrl(url));
                if (!this.results.length) throw new Error("The design job succeeded but lists no image.");
                return this.results;
            } finally {
                this.busy = false;
            }
        }

        async request(path, init) {
            const response = await fetch(this.api + path, Object.assign({
                credentials: "same-origin", headers: {"Content-Type": "application/json"},
            }, init || {}));
            if (!response.ok) throw new Error(await errorText(response));
            return response.json();
        }

        // The result lists /easyphoto/v1/... paths: under this page's API address (the WebUI may add a prefix).
        apiUrl(url) {
            if (url.startsWith(DEFAULT_API + "/")) return this.api + url.slice(DEFAULT_API.length);
            return url;
        }
    }

    // `extra` over `body`, one level deep for the config object (the page's config plus a caller's steps, say).
    function mergeFields(body, extra) {
        const merged = Object.assign({}, body, extra || {});
        if (body.config && extra && extra.config) merged.config = Object.assign({}, body.config, extra.config);
        return merged;
    }

    function progressText(job) {
        const progress = job.progress || {};
        const percent = Math.round(100 * (progress.fraction || 0));
        const what = progress.message || progress.phase || job.state;
        return "Generating: " + what + " (" + percent + " %)";
    }

    function loadImage(url) {
        return new Promise((resolve, reject) => {
            const image = new Image();
            image.onload = () => resolve(image);
            image.onerror = () => reject(new Error("the generated image cannot be shown (" + url + ")"));
            image.src = url;
        });
    }

    // The generated images beside the canvas, once each has loaded.
    async function showResults(container, urls) {
        const images = await Promise.all(urls.map(loadImage));
        container.replaceChildren(...images);
        images.forEach((image) => {
            image.alt = "generated garment";
            image.className = "easyphoto_layout_generated";
        });
        return images;
    }

    // ---------------------------------------------------------------------- the page

    function buildPicker(container, palette, select) {
        const buttons = new Map();
        palette.entries.forEach((entry) => {
            const button = document.createElement("button");
            button.type = "button";
            button.id = "easyphoto_layout_class_" + entry.id;
            button.title = entry.id === BACKGROUND ? "background (255)" : entry.name + " (" + entry.id + ")";
            const swatch = document.createElement("span");
            swatch.className = "swatch";
            swatch.style.background = "rgb(" + entry.rgb.join(",") + ")";
            button.append(swatch, entry.id === BACKGROUND ? "eraser (background)" : entry.name);
            button.addEventListener("click", () => select(entry.id));
            container.appendChild(button);
            buttons.set(entry.id, button);
        });
        return (label) => buttons.forEach((button, id) => button.classList.toggle("selected", id === label));
    }

    function readDataUrl(file) {
        return new Promise((resolve, reject) => {
            const reader = new FileReader();
            reader.onload = () => resolve(reader.result);
            reader.onerror = () => reject(reader.error);
            reader.readAsDataURL(file);
        });
    }

    // POST /design's fields from the page: its config (DesignConfig: route, category, prompt, seed, smis_model).
    function pageFields(element) {
        const config = {route: element("route").value, category: element("category").value};
        const prompt = element("prompt").value.trim();
        if (prompt) config.prompt = prompt;
        const seed = element("seed").value.trim();
        if (seed) config.seed = Number(seed);
        const model = element("smis_model").value.trim();
        if (config.route === "smis" && model) config.smis_model = model;
        return {config: config};
    }

    // The editor page (GET <api>/design/editor): every control by element id easyphoto_layout_*.
    async function mountEditor(root, api) {
        const element = (name) => root.getElementById("easyphoto_layout_" + name);
        const status = element("status");
        const say = (text) => {
            status.textContent = text;
        };
        let palette;
        try {
            palette = await fetchPalette(api);
        } catch (error) {
            say("The palette cannot be loaded: " + error.message + " (inside the WebUI this page needs --api).");
            return null;
        }
        const canvas = element("canvas");
        canvas.width = Number(element("width").value);
        canvas.height = Number(element("height").value);
        const editor = new LayoutEditor(canvas, palette, api, say);
        const showSelected = buildPicker(element("classes"), palette, (label) => {
            editor.current = label;
            showSelected(label);
            if (editor.tool === "eraser") setTool("brush");
        });
        const setTool = (tool) => {
            editor.tool = tool;
            element("tool_" + tool).checked = true;
        };
        showSelected(editor.current);
        root.querySelectorAll("input[name=easyphoto_layout_tool]").forEach((input) => {
            input.addEventListener("change", () => {
                editor.tool = input.value;
            });
        });
        const brush = element("brush");
        brush.addEventListener("input", () => {
            editor.brushSize = Math.min(128, Math.max(1, Math.round(Number(brush.value)) || 1));
        });
        editor.brushSize = Number(brush.value);
        const zoom = element("zoom");
        zoom.addEventListener("change", () => editor.setZoom(Number(zoom.value)));
        editor.setZoom(Number(zoom.value));
        const showSize = () => {
            element("width").value = editor.width;
            element("height").value = editor.height;
        };
        element("new").addEventListener("click", () => {
            try {
                editor.resize(Number(element("width").value), Number(element("height").value));
                say("New " + editor.width + "×" + editor.height + " canvas (Undo brings the last one back).");
            } catch (error) {
                say(error.message);
            }
        });
        element("undo").addEventListener("click", () => {
            if (editor.undo()) showSize();
        });
        root.addEventListener("keydown", (event) => {
            if ((event.ctrlKey || event.metaKey) && event.key === "z" && event.target.tagName !== "INPUT") {
                event.preventDefault();
                if (editor.undo()) showSize();
            }
        });
        element("clear").addEventListener("click", () => editor.clear());
        mountFiles(element, editor, say, showSize);
        mountGenerate(element, editor, say);
        window.EasyPhotoLayout.editor = editor;
        editor.ready = true;
        say("Pick a class, then paint. " + palette.classCount + " classes; the eraser paints background.");
        return editor;
    }

    function mountFiles(element, editor, say, showSize) {
        element("file").addEventListener("change", (event) => {
            const file = event.target.files[0];
            if (!file) return;
            editor.open(file).then(() => {
                showSize();
                say("Opened " + file.name + " (" + editor.width + "×" + editor.height + ").");
            }, (error) => say("The layout cannot be opened: " + error.message));
            event.target.value = "";
        });
        const tracing = element("tracing");
        const opacity = element("photo_opacity");
        tracing.style.opacity = opacity.value;
        opacity.addEventListener("input", () => {
            tracing.style.opacity = opacity.value;
        });
        element("photo").addEventListener("change", (event) => {
            const file = event.target.files[0];
            if (!file) return;
            readDataUrl(file).then((url) => {
                tracing.onload = () => {
                    tracing.style.display = "block";
                    editor.setTracing(tracing);
                };
                tracing.src = url;
            }, (error) => say("The photo cannot be read: " + error.message));
        });
        element("download").addEventListener("click", () => {
            const link = document.createElement("a");
            link.href = editor.layoutDataUrl();
            link.download = "layout.png";
            link.click();
        });
    }

    function mountGenerate(element, editor, say) {
        const button = element("generate");
        button.addEventListener("click", async () => {
            button.disabled = true;
            try {
                const urls = await editor.generate(pageFields(element));
                await showResults(element("result"), urls);
                editor.generated = true;
                say("Generated " + urls.length + " image" + (urls.length === 1 ? "" : "s") + ".");
            } catch (error) {
                editor.error = error.message;
                say("Generate failed: " + error.message);
            } finally {
                button.disabled = false;
            }
        });
    }

    window.EasyPhotoLayout = {
        BACKGROUND: BACKGROUND, Palette: Palette, LayoutEditor: LayoutEditor, fetchPalette: fetchPalette,
        labelsFromPixels: labelsFromPixels, brushOffsets: brushOffsets, mountEditor: mountEditor, editor: null,
    };
})();
