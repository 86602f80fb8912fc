// EasyPhoto browser helpers, loaded by the WebUI into every page (shared/reference/host-api.md §1.6).
// Kept tiny and namespaced: the tab itself is plain Gradio and works without this file.
(function () {
    "use strict";

    // Open a sub-tab of the EasyPhoto tab by its label ("Train", "Portrait", "Models").
    function easyphotoOpenSubTab(label) {
        const root = typeof gradioApp === "function" ? gradioApp() : document;
        const tabs = root.querySelector("#easyphoto_tabs");
        if (!tabs) return false;
        const button = Array.from(tabs.querySelectorAll("button")).find((b) => b.textContent.trim() === label);
        if (button) button.click();
        return Boolean(button);
    }

    window.easyphotoOpenSubTab = easyphotoOpenSubTab;
})();
