// A table whose column headers sort it (click or Enter / Space on the header's button).

// columns: [{key, label, format?, numeric?}]; rows: plain objects.
export function sortableTable(columns, rows, { caption, sortKey, descending = true }) {
  const table = document.createElement("table");
  table.className = "report";
  const cap = document.createElement("caption");
  cap.className = "hint";
  cap.textContent = caption;
  const head = document.createElement("thead");
  const headRow = document.createElement("tr");
  const body = document.createElement("tbody");
  let sort = { key: sortKey || columns[0].key, descending };

  const headers = columns.map((column) => {
    const th = document.createElement("th");
    th.scope = "col";
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = column.label;
    button.addEventListener("click", () => {
      sort = { key: column.key, descending: sort.key === column.key ? !sort.descending : column.numeric !== false };
      paint();
    });
    th.append(button);
    headRow.append(th);
    return th;
  });

  function paint() {
    const ordered = [...rows].sort((a, b) => compare(a[sort.key], b[sort.key]) * (sort.descending ? -1 : 1));
    body.replaceChildren(...ordered.map((row) => {
      const tr = document.createElement("tr");
      columns.forEach((column, i) => {
        const cell = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) cell.scope = "row";
        const value = row[column.key];
        const shown = column.format ? column.format(value, row) : value ?? "–";
        if (shown instanceof Node) cell.append(shown);
        else cell.textContent = String(shown);
        tr.append(cell);
      });
      return tr;
    }));
    headers.forEach((th, i) => {
      const key = columns[i].key;
      if (key === sort.key) th.setAttribute("aria-sort", sort.descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    });
  }

  head.append(headRow);
  table.append(cap, head, body);
  paint();
  return table;
}

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b));
}
