// EasyPhoto pose editor (issue 14): drag the joints of a skeleton (OpenPose JSON, COCO-18) over its photo, then send
// it back to the Digital model section. Loaded by the WebUI into every page like every javascript/*.js: nothing runs
// until called; the only global is window.EasyPhotoPose.
(function () {
    "use strict";

    const SVG = "http://www.w3.org/2000/svg";
    // COCO-18 limbs and joint colours, as easyphoto/pose/openpose.py draws them
    const LIMBS = [[1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10], [1, 11], [11, 12],
        [12, 13], [1, 0], [0, 14], [14, 16], [0, 15], [15, 17]];
    const COLOURS = ["#ff0000", "#ff5500", "#ffaa00", "#ffff00", "#aaff00", "#55ff00", "#00ff00", "#00ff55",
        "#00ffaa", "#00ffff", "#00aaff", "#0055ff", "#0000ff", "#5500ff", "#aa00ff", "#ff00ff", "#ff00aa",
        "#ff0055"];

    function element(name, attributes, parent) {
        const node = document.createElementNS(SVG, name);
        Object.entries(attributes).forEach(([key, value]) => node.setAttribute(key, value));
        if (parent) parent.appendChild(node);
        return node;
    }

    class PoseEditor {
        constructor(svg, api, key, onStatus) {
            this.svg = svg;
            this.api = api;
            this.key = key;
            this.onStatus = onStatus || function () {};
            this.ready = false;
            this.sent = false;
        }

        async open() {
            const response = await fetch(this.api + "/segment/poses/" + this.key, {credentials: "same-origin"});
            if (!response.ok) throw new Error((await response.json()).message || response.statusText);
            this.data = await response.json();
            const flat = this.data.people[0].pose_keypoints_2d;
            this.points = [];
            for (let i = 0; i < flat.length; i += 3) this.points.push([flat[i], flat[i + 1], flat[i + 2]]);
            this.draw();
            this.ready = true;
            this.onStatus("Drag a joint to move it; Send pose to EasyPhoto, then Use the edited pose in the tab.");
        }

        bounds() {
            const width = this.data.canvas_width;
            const height = this.data.canvas_height;
            const seen = this.points.filter((p) => p[2] > 0);
            const xs = seen.map((p) => p[0]).concat([0, width]);
            const ys = seen.map((p) => p[1]).concat([0, height]);
            const margin = 0.05 * Math.max(width, height);
            const left = Math.min(...xs) - margin;
            const top = Math.min(...ys) - margin;
            return [left, top, Math.max(...xs) + margin - left, Math.max(...ys) + margin - top];
        }

        draw() {
            const [left, top, width, height] = this.bounds();
            this.svg.innerHTML = "";
            this.svg.setAttribute("viewBox", [left, top, width, height].map(Math.round).join(" "));
            this.svg.setAttribute("width", Math.round(width));
            this.svg.setAttribute("height", Math.round(height));
            element("image", {href: this.api + "/segment/photos/" + this.key, x: 0, y: 0,
                width: this.data.canvas_width, height: this.data.canvas_height}, this.svg);
            this.lines = LIMBS.map(([a, b], i) => element("line", {stroke: COLOURS[i], "stroke-width": 4,
                opacity: 0.7}, this.svg));
            this.dots = this.points.map((point, i) => {
                const dot = element("circle", {r: 7, fill: COLOURS[i], stroke: "#fff", "stroke-width": 2,
                    id: "easyphoto_pose_joint_" + i, style: "cursor: grab"}, this.svg);
                dot.addEventListener("pointerdown", (event) => this.grab(event, i));
                return dot;
            });
            this.place();
        }

        place() {
            this.points.forEach(([x, y, seen], i) => {
                this.dots[i].setAttribute("cx", x);
                this.dots[i].setAttribute("cy", y);
                this.dots[i].style.display = seen > 0 ? "" : "none";
            });
            LIMBS.forEach(([a, b], i) => {
                const line = this.lines[i];
                const shown = this.points[a][2] > 0 && this.points[b][2] > 0;
                line.style.display = shown ? "" : "none";
                line.setAttribute("x1", this.points[a][0]);
                line.setAttribute("y1", this.points[a][1]);
                line.setAttribute("x2", this.points[b][0]);
                line.setAttribute("y2", this.points[b][1]);
            });
        }

        toPhoto(event) {
            const point = this.svg.createSVGPoint();
            point.x = event.clientX;
            point.y = event.clientY;
            const local = point.matrixTransform(this.svg.getScreenCTM().inverse());
            return [local.x, local.y];
        }

        grab(event, joint) {
            event.preventDefault();
            const move = (moveEvent) => {
                const [x, y] = this.toPhoto(moveEvent);
                this.points[joint] = [Math.round(x * 100) / 100, Math.round(y * 100) / 100, 1];
                this.place();
            };
            const drop = () => {
                window.removeEventListener("pointermove", move);
                window.removeEventListener("pointerup", drop);
            };
            window.addEventListener("pointermove", move);
            window.addEventListener("pointerup", drop);
        }

        skeleton() {
            return {canvas_width: this.data.canvas_width, canvas_height: this.data.canvas_height,
                people: [{pose_keypoints_2d: this.points.flat()}]};
        }

        async send() {
            const response = await fetch(this.api + "/segment/poses/" + this.key, {
                method: "PUT", credentials: "same-origin", headers: {"Content-Type": "application/json"},
                body: JSON.stringify({skeleton: this.skeleton()}),
            });
            this.sent = response.ok;
            this.onStatus(response.ok ? "Pose sent: press \u201cUse the edited pose\u201d in EasyPhoto's tab."
                : "The pose was not sent: " + ((await response.json()).message || response.statusText));
        }
    }

    function mountPoseEditor(root, api) {
        const status = root.getElementById("easyphoto_pose_status");
        const key = new URLSearchParams(location.search).get("photo");
        const editor = new PoseEditor(root.getElementById("easyphoto_pose_svg"), api, key, (text) => {
            status.textContent = text;
        });
        root.getElementById("easyphoto_pose_send").addEventListener("click", () => editor.send());
        window.EasyPhotoPose.editor = editor;
        if (!key) {
            status.textContent = "Open this editor from the Digital model section (Preview pose first).";
            return editor;
        }
        editor.open().catch((error) => {
            status.textContent = "The pose cannot be opened: " + error.message;
        });
        return editor;
    }

    window.EasyPhotoPose = {PoseEditor: PoseEditor, mountPoseEditor: mountPoseEditor, editor: null};
})();
