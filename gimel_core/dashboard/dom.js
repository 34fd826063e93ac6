// Building elements. Every name shown comes from users (experiments, goals, variants): it
// only ever reaches the page as text or as an attribute value, never as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

// h("p", { class: "x", text: "...", onclick: f }, child, [children], ...): null, undefined
// and false are skipped, among attributes and children alike.
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") el.textContent = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}
