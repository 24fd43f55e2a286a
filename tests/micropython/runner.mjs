// Run one job under real MicroPython 1.27 (the WebAssembly "pyscript" build) on Node.js.
//
// Usage:  node runner.mjs [job.json]      (no argument or "-": the job is read from stdin)
//
// A job is JSON:
//   {
//     "heapsize": 1048576,            optional, bytes: initial MicroPython GC heap
//     "files": {                      optional, MicroPython path -> content
//       "/lib/spot/core/cbor.py": "<UTF-8 text>",
//       "/tests/blob.bin": {"base64": "<bytes as base64>"}
//     },
//     "script": "<python code>"       run as __main__, or a list of such steps
//   }
//
// Steps run one after the other in the same interpreter and share __main__'s globals;
// the first step that raises ends the run. Why steps: this build cannot scan the wasm
// stack, so gc.collect() inside Python only asks for a collection, which happens when
// control returns to JavaScript, i.e. at the end of a step. Within one step nothing is
// ever freed (gc.mem_alloc() deltas there count every allocation).
//
// Parent directories of every file are created. The script's stdout and stderr are
// streamed line by line to this process's stdout and stderr. Exit status:
//   0  the script finished (or raised SystemExit with no code / code 0),
//   1  the script raised: its MicroPython traceback is printed to stderr,
//   N  the script raised SystemExit(N) with an integer N,
//   2  the job itself was invalid or the runtime failed (message on stderr).
//
// Note: the pyscript build grows its GC heap on demand, so "heapsize" is the starting
// size, not a hard limit; measure footprints with gc.mem_alloc() instead.
import { readFileSync } from "node:fs";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

function fail(message) {
    process.stderr.write("runner.mjs: " + message + "\n");
    process.exitCode = 2;
}

// Collects bytes from MicroPython and writes whole lines to a Node stream, so output
// appears as it is produced and a trailing partial line is not lost (see flush()).
function lineWriter(stream) {
    let pending = [];
    const emit = () => {
        if (pending.length) {
            stream.write(Buffer.from(pending));
            pending = [];
        }
    };
    return {
        byte(c) {
            pending.push(c);
            if (c === 10) emit();
        },
        flush: emit,
    };
}

function readJob() {
    const arg = process.argv[2];
    const text = (arg === undefined || arg === "-")
        ? readFileSync(0, "utf8")
        : readFileSync(arg, "utf8");
    const job = JSON.parse(text);
    const steps = (job !== null && typeof job === "object") ? job.script : undefined;
    const ok = typeof steps === "string"
        || (Array.isArray(steps) && steps.every((step) => typeof step === "string"));
    if (!ok) throw new Error('job must be a JSON object with a "script" string or list of strings');
    job.steps = typeof steps === "string" ? [steps] : steps;
    return job;
}

function writeFiles(FS, files) {
    for (const path of Object.keys(files).sort()) {
        if (!path.startsWith("/")) throw new Error("file path must be absolute: " + path);
        const content = files[path];
        let data;
        if (typeof content === "string") {
            data = content;  // Emscripten FS stores strings as UTF-8
        } else if (content && typeof content.base64 === "string") {
            data = new Uint8Array(Buffer.from(content.base64, "base64"));
        } else {
            throw new Error("file content must be a string or {base64}: " + path);
        }
        const dir = path.slice(0, path.lastIndexOf("/"));
        if (dir) FS.mkdirTree(dir);
        FS.writeFile(path, data);
    }
}

// Exit status for a SystemExit traceback: its code when it is an int, 0 when absent.
function systemExitStatus(traceback) {
    const lines = traceback.trimEnd().split("\n");
    const last = lines[lines.length - 1];
    const m = /^SystemExit(?::\s*(.*))?$/.exec(last);
    if (!m || m[1] === undefined || m[1] === "") return 0;
    return /^-?\d+$/.test(m[1]) ? (parseInt(m[1], 10) & 0xff) : 1;
}

async function main() {
    let job;
    try {
        job = readJob();
    } catch (e) {
        fail("bad job: " + e.message);
        return;
    }
    const out = lineWriter(process.stdout);
    const err = lineWriter(process.stderr);
    const options = {
        stdout: (bytes) => { for (const c of bytes) out.byte(c); },
        stderr: (bytes) => { for (const c of bytes) err.byte(c); },
        linebuffer: false,
    };
    if (job.heapsize !== undefined && job.heapsize !== null) {
        if (!Number.isInteger(job.heapsize) || job.heapsize <= 0) {
            fail("heapsize must be a positive integer (bytes)");
            return;
        }
        options.heapsize = job.heapsize;
    }
    let mp;
    try {
        mp = await loadMicroPython(options);
        writeFiles(mp.FS, job.files || {});
    } catch (e) {
        fail("setup failed: " + (e && e.message ? e.message : e));
        return;
    }
    try {
        for (const step of job.steps) mp.runPython(step);
        out.flush();
        err.flush();
    } catch (e) {
        out.flush();
        err.flush();
        if (e && e.constructor && e.constructor.name === "PythonError") {
            if (e.type === "SystemExit") {
                process.exitCode = systemExitStatus(e.message);
                if (process.exitCode !== 0) process.stderr.write(e.message);
            } else {
                process.stderr.write(e.message);
                process.exitCode = 1;
            }
        } else {
            fail("runtime failed: " + (e && e.stack ? e.stack : e));
        }
    }
}

await main();
