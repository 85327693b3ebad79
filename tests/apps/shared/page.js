// A page's side of the ledger: renders the rows into #rows and hands the app to the test.
export function renderRows(rows) {
  const items = rows.map(({ key, row }) => {
    const li = document.createElement("li");
    li.textContent = `${key} ${row.owner} ${row.balance}`;
    return li;
  });
  document.querySelector("#rows").replaceChildren(...items);
}
