// Who is signed in.  The token lives in an HttpOnly cookie the page never sees: the
// page only asks the server (GET /api/session/) and logs in and out through it.

import { api, ApiError } from "./api.js";
import { $ } from "./dom.js";

export class Session {
  constructor() {
    this.user = null;
    this.listeners = [];
  }

  get username() {
    return this.user ? this.user.username : null;
  }

  onChange(listener) {
    this.listeners.push(listener);
  }

  set(user) {
    const changed = (user && user.username) !== (this.user && this.user.username);
    this.user = user;
    for (const listener of this.listeners) listener(user, changed);
  }

  async load() {
    const body = await api("GET", "api/session/");
    this.set(body.user);
  }

  // The user's Elo and whereabouts change with every match: read them again.
  async refresh() {
    if (!this.user) return;
    try {
      this.set(await api("GET", `api/users/${encodeURIComponent(this.user.username)}/`));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) this.set(null);
    }
  }

  async logIn(username, password) {
    const body = await api("POST", "api/session/", { username, password });
    this.set(body.user);
  }

  async signUp(username, password) {
    await api("POST", "api/users/sign_up/", { username, password });
    await this.logIn(username, password);
  }

  async logOut() {
    await api("DELETE", "api/session/");
    this.set(null);
  }
}

// The header: one form with two buttons before sign-in, the user and "Log out" after.
export function mountAccount(session) {
  const form = $("auth-form");
  const username = $("auth-username");
  const password = $("auth-password");
  const formError = $("auth-error");
  const fieldErrors = { username: $("auth-username-error"), password: $("auth-password-error") };

  const clearErrors = () => {
    formError.textContent = "";
    for (const [name, element] of Object.entries(fieldErrors)) {
      element.textContent = "";
      (name === "username" ? username : password).removeAttribute("aria-invalid");
    }
  };

  const showError = (error) => {
    const field = error instanceof ApiError ? error.field : null;
    if (field && fieldErrors[field]) {
      fieldErrors[field].textContent = error.message;
      const input = field === "username" ? username : password;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } else {
      formError.textContent = error.message;
    }
  };

  const submit = async (action) => {
    clearErrors();
    if (!username.value) {
      fieldErrors.username.textContent = "enter a username";
      username.focus();
      return;
    }
    if (!password.value) {
      fieldErrors.password.textContent = "enter a password";
      password.focus();
      return;
    }
    const buttons = form.querySelectorAll("button");
    buttons.forEach((button) => (button.disabled = true));
    try {
      await action(username.value, password.value);
      password.value = "";
    } catch (error) {
      showError(error);
    } finally {
      buttons.forEach((button) => (button.disabled = false));
    }
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit((name, pass) => session.logIn(name, pass));
  });
  $("sign-up").addEventListener("click", () => submit((name, pass) => session.signUp(name, pass)));
  $("log-out").addEventListener("click", async () => {
    try {
      await session.logOut();
    } catch (error) {
      $("me").textContent = `Could not log out: ${error.message}`;
    }
  });

  session.onChange((user) => {
    form.hidden = user !== null;
    $("account").hidden = user === null;
    if (user) {
      clearErrors();
      $("me").textContent = `${user.username} · Elo ${user.elo}`;
    }
  });
}
