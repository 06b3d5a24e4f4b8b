// An answer's Markdown as DOM nodes: marked parses, DOMPurify removes anything that could run.
// Answers come from a model, which can be told to write HTML: nothing in one may execute.

import { Marked } from "../vendor/marked.esm.js";

const marked = new Marked({ gfm: true, breaks: false, async: false });

const PURIFY = {
  USE_PROFILES: { html: true }, // no SVG or MathML
  // Forms could phish; style is refused by the page's CSP anyway; images would call out.
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "option", "img"],
  FORBID_ATTR: ["style"],
  RETURN_DOM_FRAGMENT: true,
};

let hooked = false;

function purifier() {
  const purify = globalThis.DOMPurify;
  if (!hooked) {
    // Links open elsewhere and tell the target nothing about the portal.
    purify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A") {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    });
    hooked = true;
  }
  return purify;
}

export function renderMarkdown(text) {
  return purifier().sanitize(marked.parse(text), PURIFY);
}
