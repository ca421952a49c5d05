// The game engine this page plays for a program run with the client engine: each of the
// program's send(...) calls arrives as a "command" and gets the answer computed here.

export class GuessEngine {
  constructor(random = Math.random) {
    this.secret = 1 + Math.floor(random() * 100);
    this.tries = 0;
  }

  answer(command) {
    if (command && typeof command === "object" && command.type === "guess") {
      const number = command.number;
      if (!Number.isInteger(number)) return { error: "number must be an integer from 1 to 100" };
      this.tries += 1;
      let answer = "correct";
      if (number < this.secret) answer = "higher";
      else if (number > this.secret) answer = "lower";
      return { answer, tries: this.tries };
    }
    if (command && typeof command === "object" && command.type === "echo") {
      return { echo: command };
    }
    return { error: 'this page knows {"type": "guess", "number": n} and {"type": "echo"}' };
  }
}
