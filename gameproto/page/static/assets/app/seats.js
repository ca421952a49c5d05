// Which seat this tab took in which match, so a reload sits down again.  The server
// knows a seat once the game runs (GET /api/users/{name}/ says host or challenger);
// before the start a challenger who reloads has briefly left, and this remembers
// the intent.  It is not a secret: sessionStorage, per tab.

const KEY = "gameproto.seats";

function read() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) || {};
  } catch (error) {
    return {};
  }
}

export const seats = {
  remember(matchId, role) {
    const all = read();
    all[matchId] = role;
    sessionStorage.setItem(KEY, JSON.stringify(all));
  },
  get(matchId) {
    return read()[matchId] || null;
  },
  forget(matchId) {
    const all = read();
    delete all[matchId];
    sessionStorage.setItem(KEY, JSON.stringify(all));
  },
};
