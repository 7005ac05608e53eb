// Building the page safely. Every piece of text goes through textContent or a text
// node: data from a dataset (field values, names) can never become markup here.

const SAFE_ATTR = /^(?:[a-z][a-z0-9-]*)$/;

/**
 * Create an element. `props` keys: `class`, `text`, `dataset` (object), `style`
 * (object of CSS properties), `on` (object of event listeners), anything else is an
 * attribute (event-handler attributes are refused).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") Object.assign(el.style, value);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === "value") el.value = value;
    else if (key === "checked" || key === "disabled" || key === "selected") el[key] = Boolean(value);
    else {
      if (!SAFE_ATTR.test(key) || key.startsWith("on")) throw new Error(`refused attribute ${key}`);
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children: nodes as they are, strings and numbers as text nodes. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Remove every child. */
export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Replace an element's children. */
export function mount(el, ...children) {
  return append(clear(el), children);
}

/** A short message at the bottom right. */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status", text: message });
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 7000 : 3500);
}

/** Copy text to the clipboard, with a fallback for browsers without the async API. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h("textarea", { value: text, style: { position: "fixed", opacity: "0" } });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  toast("Copied to the clipboard");
}

/** A modal <dialog> holding a form; resolves when it closes. */
export function openDialog(build) {
  const dialog = h("dialog");
  const close = () => dialog.close();
  dialog.append(build(close));
  document.body.append(dialog);
  dialog.addEventListener("close", () => dialog.remove());
  dialog.showModal();
  return dialog;
}
