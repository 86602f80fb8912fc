// EasyPhoto click-to-mask in the browser (issue 14). The server computes the photo's SAM image embedding once
// (POST <api>/segment/embedding); this file runs the SAM prompt decoder with ONNX Runtime Web on every click, so a
// click costs no server round trip and no GPU time. ONNX Runtime Web and the decoder are served by EasyPhoto itself
// (<api>/assets/onnxruntime-web/, <api>/segment/decoder.onnx): no CDN, works offline.
//
// The WebUI loads every javascript/*.js of an extension into its page: nothing here runs until called, and the only
// global is window.EasyPhotoSam. The prompt encoding is the one easyphoto/segment/sam.py uses, so the browser's
// mask and POST <api>/segment/predict's agree: points scaled to the encoder's resized frame, a padding point
// (0, 0) labelled -1, an empty mask input, the original size; logits > 0 are the mask.
(function () {
    "use strict";

    const DEFAULT_API = "/easyphoto/v1";
    const runtimes = {};

    function loadScript(src) {
        return new Promise((resolve, reject) => {
            const script = document.createElement("script");
            script.src = src;
            script.onload = resolve;
            script.onerror = () => reject(new Error("cannot load " + src));
            document.head.appendChild(script);
        });
    }

    // ONNX Runtime Web from EasyPhoto's own route, single-threaded (no cross-origin isolation needed).
    async function loadRuntime(api) {
        if (!runtimes[api]) {
            runtimes[api] = (async () => {
                if (!window.ort) await loadScript(api + "/assets/onnxruntime-web/ort.wasm.min.js");
                window.ort.env.wasm.wasmPaths = new URL(api + "/assets/onnxruntime-web/", location.href).href;
                window.ort.env.wasm.numThreads = 1;
                window.ort.env.wasm.proxy = false;
                return window.ort;
            })();
        }
        return runtimes[api];
    }

    async function createDecoder(api) {
        const ort = await loadRuntime(api);
        const response = await fetch(api + "/segment/decoder.onnx", {credentials: "same-origin"});
        if (!response.ok) throw new Error(await errorText(response));
        const model = new Uint8Array(await response.arrayBuffer());
        return ort.InferenceSession.create(model, {executionProviders: ["wasm"]});
    }

    async function errorText(response) {
        try {
            const body = await response.json();
            return [body.message, body.hint].filter(Boolean).join(" ");
        } catch (error) {
            return response.status + " " + response.statusText;
        }
    }

    // A .npy file (format 1.0 or 2.0, little-endian float32, C order) → {data, shape}.
    function parseNpy(buffer) {
        const bytes = new Uint8Array(buffer);
        const magic = String.fromCharCode.apply(null, bytes.slice(1, 6));
        if (bytes[0] !== 0x93 || magic !== "NUMPY") throw new Error("not a .npy file");
        const view = new DataView(buffer);
        const major = bytes[6];
        const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
        const start = major === 1 ? 10 : 12;
        const header = new TextDecoder("latin1").decode(bytes.slice(start, start + headerLength));
        if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header)) {
            throw new Error("the embedding must be little-endian float32 in C order: " + header);
        }
        const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(",").map((s) => s.trim())
            .filter(Boolean).map(Number);
        const offset = start + headerLength;
        return {data: new Float32Array(buffer.slice(offset)), shape: shape};
    }

    function sizeHeader(response, name) {
        return (response.headers.get(name) || "").split(",").map(Number);
    }

    async function fetchEmbedding(api, dataUrl) {
        const response = await fetch(api + "/segment/embedding", {
            method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"},
            body: JSON.stringify({image: dataUrl}),
        });
        if (!response.ok) throw new Error(await errorText(response));
        const array = parseNpy(await response.arrayBuffer());
        return {
            data: array.data, shape: array.shape, key: response.headers.get("X-EasyPhoto-Image-Key"),
            original: sizeHeader(response, "X-EasyPhoto-Original-Size"),
            resized: sizeHeader(response, "X-EasyPhoto-Resized-Size"),
        };
    }

    // The mask of `points` ([x, y, positive] in photo pixels) as {width, height, data: Uint8Array 0/255}.
    async function decode(session, embedding, points) {
        const ort = window.ort;
        const [height, width] = embedding.original;
        const [newH, newW] = embedding.resized;
        const coords = [];
        const labels = [];
        points.forEach(([x, y, positive]) => {
            coords.push(x * newW / width, y * newH / height);
            labels.push(positive ? 1 : 0);
        });
        coords.push(0, 0);  // the official padding point: no box follows
        labels.push(-1);
        const count = labels.length;
        const side = 4 * embedding.shape[embedding.shape.length - 1];
        const feeds = {
            image_embeddings: new ort.Tensor("float32", embedding.data, embedding.shape),
            point_coords: new ort.Tensor("float32", Float32Array.from(coords), [1, count, 2]),
            point_labels: new ort.Tensor("float32", Float32Array.from(labels), [1, count]),
            mask_input: new ort.Tensor("float32", new Float32Array(side * side), [1, 1, side, side]),
            has_mask_input: new ort.Tensor("float32", new Float32Array(1), [1]),
            orig_im_size: new ort.Tensor("float32", Float32Array.from([height, width]), [2]),
        };
        const results = await session.run(feeds);
        const masks = results.masks;
        const [, k, h, w] = masks.dims;
        const index = chooseMask(k, count, results.iou_predictions ? results.iou_predictions.data : null);
        const logits = masks.data.subarray(index * h * w, (index + 1) * h * w);
        const data = new Uint8Array(h * w);
        for (let i = 0; i < data.length; i++) data[i] = logits[i] > 0 ? 255 : 0;
        return {width: w, height: h, data: data};
    }

    // As sam.choose_mask: a single-mask export's only mask; of four, the first for more than two prompt points,
    // else the best predicted IoU among the other three.
    function chooseMask(k, count, scores) {
        if (k === 1 || count > 2 || !scores) return 0;
        let best = 1;
        for (let i = 2; i < k; i++) if (scores[i] > scores[best]) best = i;
        return best;
    }

    function union(masks, width, height) {
        const out = new Uint8Array(width * height);
        masks.forEach((mask) => {
            for (let i = 0; i < out.length; i++) if (mask.data[i]) out[i] = 255;
        });
        return {width: width, height: height, data: out};
    }

    // The editor's state: committed regions (merged by union), the current region's clicks, an undo history.
    class MaskEditor {
        constructor(canvas, api, onStatus) {
            this.canvas = canvas;
            this.api = api || DEFAULT_API;
            this.onStatus = onStatus || function () {};
            this.ready = false;
            this.busy = false;
            this.regions = [];
            this.clicks = [];
            this.current = null;
            this.history = [];
            this.session = null;
            canvas.addEventListener("click", (event) => this.click(event, true));
            canvas.addEventListener("contextmenu", (event) => {
                event.preventDefault();
                this.click(event, false);
            });
        }

        async open(dataUrl) {
            this.ready = false;
            this.regions = [];
            this.clicks = [];
            this.current = null;
            this.history = [];
            this.image = await new Promise((resolve, reject) => {
                const image = new Image();
                image.onload = () => resolve(image);
                image.onerror = () => reject(new Error("the photo cannot be shown"));
                image.src = dataUrl;
            });
            this.canvas.width = this.image.naturalWidth;
            this.canvas.height = this.image.naturalHeight;
            this.draw();
            this.onStatus("Preparing the photo…");
            this.session = this.session || await createDecoder(this.api);
            this.embedding = await fetchEmbedding(this.api, dataUrl);
            this.ready = true;
            this.onStatus("Left click adds, right click removes; New region keeps this one and starts another.");
        }

        point(event) {
            // offsetX/Y: from the padding box's corner, border excluded; clientWidth: the shown size (CSS may scale)
            const x = event.offsetX * this.canvas.width / this.canvas.clientWidth;
            const y = event.offsetY * this.canvas.height / this.canvas.clientHeight;
            return [Math.min(Math.max(x, 0), this.canvas.width - 1), Math.min(Math.max(y, 0), this.canvas.height - 1)];
        }

        async click(event, positive) {
            if (!this.ready) {
                this.onStatus("Wait until the photo is prepared, then click.");
                return;
            }
            if (this.busy) {
                this.onStatus("Still computing the last click: click again in a moment.");
                return;
            }
            const [x, y] = this.point(event);
            this.clicks.push([x, y, positive]);
            this.history.push("click");
            await this.update();
        }

        async update() {
            this.busy = true;
            try {
                const any = this.clicks.some((c) => c[2]);
                this.current = any ? await decode(this.session, this.embedding, this.clicks) : null;
                this.draw();
            } catch (error) {
                this.onStatus("The mask cannot be computed: " + error.message);
            } finally {
                this.busy = false;
            }
        }

        newRegion() {
            if (!this.current) return;
            this.regions.push({mask: this.current, clicks: this.clicks});
            this.clicks = [];
            this.current = null;
            this.history.push("region");
            this.draw();
        }

        async undo() {
            const last = this.history.pop();
            if (last === "region") {
                const region = this.regions.pop();
                this.clicks = region.clicks;
                this.current = region.mask;
                this.draw();
            } else if (last === "click") {
                this.clicks.pop();
                await this.update();
            }
        }

        clear() {
            this.regions = [];
            this.clicks = [];
            this.current = null;
            this.history = [];
            this.draw();
        }

        mask() {
            const masks = this.regions.map((r) => r.mask).concat(this.current ? [this.current] : []);
            return union(masks, this.canvas.width, this.canvas.height);
        }

        maskDataUrl() {
            const mask = this.mask();
            const canvas = document.createElement("canvas");
            canvas.width = mask.width;
            canvas.height = mask.height;
            const context = canvas.getContext("2d");
            const pixels = context.createImageData(mask.width, mask.height);
            for (let i = 0; i < mask.data.length; i++) {
                pixels.data.set([mask.data[i], mask.data[i], mask.data[i], 255], 4 * i);
            }
            context.putImageData(pixels, 0, 0);
            return canvas.toDataURL("image/png");
        }

        draw() {
            const context = this.canvas.getContext("2d");
            if (!this.image) return;
            context.drawImage(this.image, 0, 0);
            const mask = this.mask();
            const pixels = context.getImageData(0, 0, mask.width, mask.height);
            for (let i = 0; i < mask.data.length; i++) {
                if (!mask.data[i]) continue;
                pixels.data[4 * i] = 0.55 * pixels.data[4 * i] + 0.45 * 255;
                pixels.data[4 * i + 1] = 0.55 * pixels.data[4 * i + 1] + 0.45 * 60;
                pixels.data[4 * i + 2] = 0.55 * pixels.data[4 * i + 2] + 0.45 * 60;
            }
            context.putImageData(pixels, 0, 0);
            const radius = Math.max(4, Math.min(mask.width, mask.height) / 80);
            this.regions.flatMap((r) => r.clicks).concat(this.clicks).forEach(([x, y, positive]) => {
                context.beginPath();
                context.arc(x, y, radius, 0, 2 * Math.PI);
                context.fillStyle = positive ? "#2ecc40" : "#ff4136";
                context.fill();
            });
        }
    }

    // The editor page (GET <api>/segment/editor): a file input, the canvas and the buttons, by element id.
    function mountEditor(root, api) {
        const status = root.getElementById("easyphoto_sam_status");
        const editor = new MaskEditor(root.getElementById("easyphoto_sam_canvas"), api, (text) => {
            status.textContent = text;
        });
        root.getElementById("easyphoto_sam_file").addEventListener("change", (event) => {
            const file = event.target.files[0];
            if (!file) return;
            const reader = new FileReader();
            reader.onload = () => editor.open(reader.result).catch((error) => {
                status.textContent = "The photo cannot be prepared: " + error.message;
            });
            reader.readAsDataURL(file);
        });
        root.getElementById("easyphoto_sam_region").addEventListener("click", () => editor.newRegion());
        root.getElementById("easyphoto_sam_undo").addEventListener("click", () => editor.undo());
        root.getElementById("easyphoto_sam_clear").addEventListener("click", () => editor.clear());
        root.getElementById("easyphoto_sam_send").addEventListener("click", () => {
            sendMask(editor, api).then((text) => {
                status.textContent = text;
            });
        });
        const key = new URLSearchParams(location.search).get("photo");
        if (key) openStoredPhoto(editor, api, key, status);
        root.getElementById("easyphoto_sam_download").addEventListener("click", () => {
            const link = document.createElement("a");
            link.href = editor.maskDataUrl();
            link.download = "mask.png";
            link.click();
        });
        window.EasyPhotoSam.editor = editor;
        return editor;
    }

    // The photo a tab handed over (GET <api>/segment/photos/<key>), opened as if picked.
    async function openStoredPhoto(editor, api, key, status) {
        try {
            const response = await fetch(api + "/segment/photos/" + encodeURIComponent(key),
                {credentials: "same-origin"});
            if (!response.ok) throw new Error(await errorText(response));
            const blob = await response.blob();
            const dataUrl = await new Promise((resolve) => {
                const reader = new FileReader();
                reader.onload = () => resolve(reader.result);
                reader.readAsDataURL(blob);
            });
            await editor.open(dataUrl);
        } catch (error) {
            status.textContent = "The photo cannot be opened: " + error.message;
        }
    }

    // The mask, under the photo's key (PUT <api>/segment/masks/<key>), for the tab's "Use the editor's mask".
    async function sendMask(editor, api) {
        if (!editor.ready || !editor.embedding) return "Open a photo first.";
        const response = await fetch(api + "/segment/masks/" + editor.embedding.key, {
            method: "PUT", credentials: "same-origin", headers: {"Content-Type": "application/json"},
            body: JSON.stringify({mask: editor.maskDataUrl()}),
        });
        editor.sent = response.ok;
        if (!response.ok) return "The mask was not sent: " + await errorText(response);
        return "Mask sent: press \u201cUse the editor's mask\u201d in EasyPhoto's tab.";
    }

    window.EasyPhotoSam = {
        loadRuntime: loadRuntime, createDecoder: createDecoder, fetchEmbedding: fetchEmbedding, decode: decode,
        parseNpy: parseNpy, MaskEditor: MaskEditor, mountEditor: mountEditor, editor: null,
    };
})();
