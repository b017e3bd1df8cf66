// The kind picker: the kinds GET /kinds lists, and a form for the chosen kind's
// parameters, generated from their JSON Schema (the range fields serve any kind
// whose parameters have a start and an end).

import { api } from "./api.js";
import { el, show, ui } from "./dom.js";

let kinds = [];

function chosen() {
  return kinds.find((kind) => kind.name === ui.kind.value);
}

// A property's own schema: `int | None` and friends come as anyOf with null.
function plain(schema) {
  return (schema.anyOf || []).find((s) => s.type && s.type !== "null") || schema;
}

function hasRange(kind) {
  const props = (kind && kind.params.properties) || {};
  return "start" in props && "end" in props;
}

function field(name, schema) {
  const own = plain(schema);
  const id = `param-${name}`;
  const props = { id, name, "data-param": name, "data-type": own.type || "string" };
  let input;
  if (own.enum) {
    input = el("select", props, ...own.enum.map((v) => el("option", { value: v, text: v })));
  } else if (own.type === "boolean") {
    input = el("input", { ...props, type: "checkbox" });
    input.checked = Boolean(schema.default);
  } else {
    const type = own.type === "integer" || own.type === "number" ? "number" : own.format === "date" ? "date" : "text";
    input = el("input", { ...props, type });
    if (own.minimum !== undefined) input.min = own.minimum;
    if (own.maximum !== undefined) input.max = own.maximum;
    if (schema.default !== undefined && schema.default !== null) input.value = schema.default;
  }
  const label = el("label", { for: id, text: schema.title || name });
  const help = schema.description ? el("p", { class: "help", text: schema.description }) : "";
  return el("div", { class: "field" }, label, input, help);
}

export function showKindForm() {
  const kind = chosen();
  show(ui.range, !kind || hasRange(kind));
  show(ui.rangeHelp, !kind || hasRange(kind));
  const props = (kind && kind.params.properties) || {};
  const own = Object.entries(props).filter(([name]) => !(hasRange(kind) && (name === "start" || name === "end")));
  ui.kindParams.replaceChildren(...own.map(([name, schema]) => field(name, schema)));
  ui.kindHelp.textContent = kind ? kind.description : "";
  ui.generateButton.dataset.format = kind ? kind.format : "pdf";
}

export async function loadKinds() {
  const response = await api("/kinds");
  if (!response.ok) return;
  kinds = (await response.json()).kinds;
  const current = ui.kind.value;
  ui.kind.replaceChildren(
    ...kinds.map((kind) => el("option", { value: kind.name, text: `${kind.title} (${kind.format})` })),
  );
  ui.kind.value = kinds.some((k) => k.name === current) ? current : "transactions";
  show(ui.kindField, kinds.length > 1);
  showKindForm();
}

// The body of POST /reports for the picked kind and its form.
export function kindRequest(range) {
  const kind = chosen();
  if (!kind || kind.default) return range;
  const body = { kind: kind.name };
  if (hasRange(kind)) Object.assign(body, range);
  for (const input of ui.kindParams.querySelectorAll("[data-param]")) {
    const type = input.dataset.type;
    if (type === "boolean") body[input.dataset.param] = input.checked;
    else if (input.value === "") continue;
    else if (type === "integer" || type === "number") body[input.dataset.param] = Number(input.value);
    else body[input.dataset.param] = input.value;
  }
  return body;
}
