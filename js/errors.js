/** Every error logfold throws: a real Error with a stable `code` and `details`. */
export class LogfoldError extends Error {
  constructor(code, message, details) {
    super(message);
    this.name = "LogfoldError";
    this.code = code;
    this.details = details ?? {};
  }
}
