(function () {
  "use strict";
  // Everything the sandbox itself relies on is captured here, before the author's script runs, so a
  // script that replaces a built-in (JSON.stringify, Promise.prototype.then, ...) cannot change how its
  // plan is recorded or read back.
  const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
  const apply = Reflect.apply;
  const then = Promise.prototype.then;
  const resolved = Promise.resolve.bind(Promise);
  const freeze = Object.freeze;
  const isFrozen = Object.isFrozen;
  const defineProperty = Object.defineProperty;
  const keys = Object.keys;
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const toString = String;
  const construct = Reflect.construct;
  const SEVERITIES = freeze(["critical", "high", "medium", "low"]);
  const MAX_LOG_CHARS = 2000;

  const actions = [];
  const logs = [];
  let maxActions = 0;
  let maxLogLines = 0;
  let script = null;
  let outcome = { state: "pending", error: null };

  // No timers: a script awaits nothing but the capability API's already-resolved promises.
  globalThis.setTimeout = undefined;
  globalThis.clearTimeout = undefined;
  globalThis.__timer_manager = undefined;

  function describe(value) {
    return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
  }

  function requireName(call, what, value) {
    if (typeof value !== "string" || value === "") {
      throw new TypeError(call + ": " + what + " must be a non-empty string, got " + describe(value));
    }
    return value;
  }

  function record(type, target, params) {
    if (actions.length >= maxActions) {
      throw new RangeError(type + ": a run may take at most " + maxActions + " actions");
    }
    actions[actions.length] = { type: type, target: target, params: params };
    return resolved(undefined);
  }

  function jsonOf(call, value) {
    if (value === undefined) {
      return null;
    }
    const text = stringify(value);
    if (text === undefined) {
      throw new TypeError(call + ": payload must be a JSON value, got " + describe(value));
    }
    return parse(text);
  }

  function writeLog(level, message) {
    if (logs.length < maxLogLines) {
      const text = toString(message);
      logs[logs.length] = { level: level, message: text.length > MAX_LOG_CHARS ? text.slice(0, MAX_LOG_CHARS) : text };
    }
    return resolved(undefined);
  }

  function deepFreeze(root) {
    const pending = [root];
    while (pending.length > 0) {
      const value = pending.pop();
      if (value !== null && typeof value === "object" && !isFrozen(value)) {
        freeze(value);
        for (const key of keys(value)) {
          pending.push(value[key]);
        }
      }
    }
    return root;
  }

  function constant(name, value) {
    defineProperty(globalThis, name, { value: value, writable: false, enumerable: true, configurable: false });
  }

  constant("docker", freeze({
    restart(id) { return record("docker.restart", requireName("docker.restart(id)", "id", id), {}); },
    stop(id) { return record("docker.stop", requireName("docker.stop(id)", "id", id), {}); },
    start(id) { return record("docker.start", requireName("docker.start(id)", "id", id), {}); },
    prune() { return record("docker.prune", "", {}); },
  }));
  constant("incident", freeze({
    open(issue, options) {
      const call = "incident.open(issue, {severity})";
      requireName(call, "issue", issue);
      if (options !== undefined && (options === null || typeof options !== "object")) {
        throw new TypeError(call + ": the options must be an object, got " + describe(options));
      }
      const severity = options === undefined || options.severity === undefined ? "high" : options.severity;
      // Compared one by one, not with SEVERITIES.includes: the script may have replaced Array methods.
      if (severity !== SEVERITIES[0] && severity !== SEVERITIES[1] && severity !== SEVERITIES[2] && severity !== SEVERITIES[3]) {
        throw new TypeError(call + ": severity must be one of critical, high, medium, low, got " + toString(severity));
      }
      return record("incident.open", issue, { severity: severity });
    },
    resolve(notes) {
      if (notes !== undefined && typeof notes !== "string") {
        throw new TypeError("incident.resolve(notes): notes must be a string, got " + describe(notes));
      }
      return record("incident.resolve", "", { notes: notes === undefined ? "" : notes });
    },
  }));
  constant("notify", freeze({
    webhook(channel, payload) {
      const call = "notify.webhook(channel, payload)";
      requireName(call, "channel", channel);
      return record("notify.webhook", channel, { payload: jsonOf(call, payload) });
    },
    slack(channel, text) {
      const call = "notify.slack(channel, text)";
      requireName(call, "channel", channel);
      if (typeof text !== "string") {
        throw new TypeError(call + ": text must be a string, got " + describe(text));
      }
      return record("notify.slack", channel, { text: text });
    },
  }));
  constant("log", freeze({
    info(message) { return writeLog("info", message); },
    warn(message) { return writeLog("warn", message); },
    error(message) { return writeLog("error", message); },
  }));

  function failure(error) {
    let message = "the script threw a value that cannot be described";
    let stack = null;
    try {
      message = toString(error);
      if (error !== null && typeof error === "object" && typeof error.stack === "string") {
        stack = error.stack;
      }
    } catch (ignored) {
      // The thrown value's own toString or stack getter threw: the fallback message stands.
    }
    return { state: "failed", error: { message: message, stack: stack } };
  }

  let phase = "new";

  function enter(from, to) {
    if (phase !== from) {
      throw new Error("the sandbox's " + to + " step may run only once, in order");
    }
    phase = to;
  }

  // A global so that `start` and `report` can be reached by a plain eval once the script runs (any other
  // kind of call would queue behind a runaway script without a timeout). Each step runs once, in order,
  // so a script calling them gains nothing: `report` only reads the script's own plan.
  const api = freeze({
    // The context arrives as JSON text, never pasted into code. Declared names absent from it are
    // still declared (as undefined) so a script can test them; keys naming a built-in are skipped.
    setup(contextJson, declaredJson, actionLimit, logLimit) {
      enter("new", "setup");
      maxActions = actionLimit;
      maxLogLines = logLimit;
      const context = parse(contextJson);
      for (const name of parse(declaredJson)) {
        if (!(name in context)) {
          constant(name, undefined);
        }
      }
      const skipped = [];
      for (const name of keys(context)) {
        if (name in globalThis) {
          skipped[skipped.length] = name;
        } else {
          constant(name, deepFreeze(context[name]));
        }
      }
      return stringify(skipped);
    },
    // The script becomes the body of an async function built by the AsyncFunction constructor: the
    // body cannot close the function early, and compiling runs none of it.
    compile(body) {
      enter(phase === "new" ? "new" : "setup", "compile");
      script = construct(AsyncFunction, [body]);
    },
    start() {
      enter("compile", "start");
      const running = apply(script, undefined, []);
      apply(then, running, [
        function () { outcome = { state: "done", error: null }; },
        function (error) { outcome = failure(error); },
      ]);
    },
    report() {
      return stringify({ state: outcome.state, error: outcome.error, actions: actions, logs: logs });
    },
  });
  constant("__worpen", api);
  return api;
})()
