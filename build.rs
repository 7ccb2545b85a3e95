//! Build script: find the interpreter the extension is built for, tell the crate which CPython
//! version it targets, and check every struct field the Rust code relies on against that
//! interpreter's own headers.
//!
//! The interpreter is the one `pyo3-ffi` resolved (it honours `PYO3_PYTHON`, a virtualenv, and
//! maturin's choice); its configuration reaches us through `DEP_PYTHON_PYO3_CONFIG`.
//!
//! Layout checking works in three steps:
//! 1. bindgen parses `Python.h` from the interpreter's include directory and produces Rust
//!    declarations of `PyFunctionObject`, `PyCodeObject`, `PyTypeObject` and
//!    `PyHeapTypeObject`, with the offset of every field.
//! 2. For each field in `RELIED_ON` we generate a compile-time assertion that `pyo3-ffi`'s
//!    declaration puts the field at the same offset as the headers (`layout_checks.rs`). A
//!    mismatch stops the build with a message naming the struct and the field.
//! 3. The same offsets are asserted in C (`_Static_assert`) and compiled with the system C
//!    compiler through `cc`, so libclang's reading of the headers agrees with the compiler's.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Oldest and newest CPython minor versions this crate supports.
const MINOR_MIN: u32 = 10;
const MINOR_MAX: u32 = 15;

/// A field the Rust code reads or writes, and the first CPython minor version that has it.
struct Field {
    name: &'static str,
    since: u32,
    /// Last minor version that has the field (inclusive).
    until: u32,
}

const fn f(name: &'static str, since: u32) -> Field {
    Field {
        name,
        since,
        until: u32::MAX,
    }
}

/// Structs declared by `pyo3-ffi` whose fields we touch: each field listed here gets an offset
/// assertion, and the struct gets a size assertion.
const PYO3_STRUCTS: &[(&str, &[Field])] = &[
    (
        "PyFunctionObject",
        &[
            f("func_globals", 10),
            f("func_builtins", 10),
            f("func_name", 10),
            f("func_qualname", 10),
            f("func_code", 10),
            f("func_defaults", 10),
            f("func_kwdefaults", 10),
            f("func_closure", 10),
            f("func_doc", 10),
            f("func_dict", 10),
            f("func_module", 10),
            f("func_annotations", 10),
            f("func_annotate", 14),
            f("func_typeparams", 12),
            f("vectorcall", 10),
            f("func_version", 11),
        ],
    ),
    (
        "PyTypeObject",
        &[
            f("tp_name", 10),
            f("tp_basicsize", 10),
            f("tp_itemsize", 10),
            f("tp_setattro", 10),
            f("tp_weaklistoffset", 10),
            f("tp_dictoffset", 10),
            f("tp_version_tag", 10),
        ],
    ),
    (
        "PyHeapTypeObject",
        &[f("ht_slots", 10), f("ht_qualname", 10)],
    ),
];

/// Fields of structs that `pyo3-ffi` leaves opaque; the Rust code reads them through the
/// bindgen declaration itself, so the C compiler cross-check is what guards them.
const HEADER_ONLY: &[(&str, &[Field])] = &[(
    "PyCodeObject",
    &[
        Field {
            name: "co_version",
            since: 13,
            until: u32::MAX,
        },
        f("co_code_adaptive", 11),
    ],
)];

struct Interpreter {
    executable: String,
    minor: u32,
    micro: u32,
    version: String,
    hexversion: u64,
    include: PathBuf,
    gil_disabled: bool,
    debug: bool,
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo::rerun-if-env-changed=MIGHTY_PATCHER_PYTHON_INCLUDE");
    for minor in MINOR_MIN..=MINOR_MAX {
        println!("cargo::rustc-check-cfg=cfg(Py_3_{minor})");
    }
    println!("cargo::rustc-check-cfg=cfg(Py_GIL_DISABLED)");
    println!("cargo::rustc-check-cfg=cfg(Py_DEBUG)");

    let py = match interpreter() {
        Ok(py) => py,
        Err(message) => fail(&message),
    };
    if !(MINOR_MIN..=MINOR_MAX).contains(&py.minor) {
        fail(&format!(
            "{} is CPython {}, which mighty_patcher does not support; supported: CPython \
             3.{MINOR_MIN} to 3.{MINOR_MAX}",
            py.executable, py.version
        ));
    }

    for minor in MINOR_MIN..=py.minor {
        println!("cargo::rustc-cfg=Py_3_{minor}");
    }
    if py.gil_disabled {
        println!("cargo::rustc-cfg=Py_GIL_DISABLED");
    }
    if py.debug {
        println!("cargo::rustc-cfg=Py_DEBUG");
    }
    println!("cargo::rustc-env=MP_BUILT_VERSION={}", py.version);
    println!("cargo::rustc-env=MP_BUILT_MINOR={}", py.minor);
    println!("cargo::rustc-env=MP_BUILT_MICRO={}", py.micro);
    println!("cargo::rustc-env=MP_BUILT_HEXVERSION={}", py.hexversion);
    println!(
        "cargo::rustc-env=MP_BUILT_FREE_THREADED={}",
        u8::from(py.gil_disabled)
    );
    println!("cargo::rustc-env=MP_BUILT_EXECUTABLE={}", py.executable);

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let include = match env::var("MIGHTY_PATCHER_PYTHON_INCLUDE") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => py.include.clone(),
    };
    println!("cargo::rustc-env=MP_BUILT_INCLUDE={}", include.display());
    let bindings = generate_bindings(&include, &out);
    let offsets = parse_offsets(&bindings);
    write_rust_checks(&py, &include, &offsets, &out);
    compile_c_checks(&py, &include, &offsets, &out);
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// The interpreter `pyo3-ffi` resolved, or `PYO3_PYTHON`, or `python3` from `PATH`.
fn interpreter() -> Result<Interpreter, String> {
    let executable = pyo3_config_executable()
        .or_else(|| env::var("PYO3_PYTHON").ok())
        .unwrap_or_else(|| "python3".to_owned());
    let script = "import sys, sysconfig\n\
        print(sys.implementation.name)\n\
        print('%d %d %d' % sys.version_info[:3])\n\
        print(sys.version.split()[0])\n\
        print(sys.hexversion)\n\
        print(sysconfig.get_paths()['include'])\n\
        print(int(bool(sysconfig.get_config_var('Py_GIL_DISABLED'))))\n\
        print(int(hasattr(sys, 'gettotalrefcount')))\n";
    let output = Command::new(&executable)
        .args(["-I", "-c", script])
        .output()
        .map_err(|e| format!("cannot run the Python interpreter {executable:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{executable} failed to describe itself: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let [
        implementation,
        numbers,
        version,
        hexversion,
        include,
        gil_disabled,
        debug,
    ] = lines[..]
    else {
        return Err(format!("unexpected answer from {executable}: {text:?}"));
    };
    if implementation != "cpython" {
        return Err(format!(
            "{executable} is {implementation}; mighty_patcher patches CPython's own objects and \
             supports CPython only"
        ));
    }
    let numbers: Vec<u32> = numbers.split(' ').filter_map(|n| n.parse().ok()).collect();
    let [3, minor, micro] = numbers[..] else {
        return Err(format!(
            "{executable} reports an unexpected version {numbers:?}"
        ));
    };
    Ok(Interpreter {
        executable,
        minor,
        micro,
        version: version.to_owned(),
        hexversion: hexversion
            .parse()
            .map_err(|_| "bad sys.hexversion".to_owned())?,
        include: PathBuf::from(include),
        gil_disabled: gil_disabled == "1",
        debug: debug == "1",
    })
}

/// `pyo3-ffi` publishes its interpreter configuration, hex-encoded, to crates that depend on
/// it (it declares `links = "python"`).
fn pyo3_config_executable() -> Option<String> {
    let hex = env::var("DEP_PYTHON_PYO3_CONFIG").ok()?;
    let bytes: Vec<u8> = hex
        .as_bytes()
        .chunks_exact(2)
        .filter_map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("executable="))
        .map(str::to_owned)
}

fn generate_bindings(include: &Path, out: &Path) -> String {
    let header = include.join("Python.h");
    if !header.exists() {
        fail(&format!(
            "{} does not exist: the interpreter's C headers are needed to check struct layouts \
             (Debian/Ubuntu: apt-get install python3-dev; Fedora: dnf install python3-devel; \
             or install a binary wheel)",
            header.display()
        ));
    }
    println!(
        "cargo::rerun-if-changed={}",
        include.join("cpython").display()
    );
    // bindgen loads libclang at run time and panics, with a backtrace, when it is missing:
    // load it first, so that a build from the sdist says what to install instead.
    if let Err(why) = clang_sys::load() {
        fail(&libclang_missing(&why));
    }
    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_type("PyFunctionObject|PyCodeObject|PyTypeObject|PyHeapTypeObject")
        .layout_tests(true)
        .derive_debug(false)
        .derive_copy(false)
        .generate_comments(false)
        .generate()
        .unwrap_or_else(|e| {
            fail(&format!(
                "bindgen could not parse {}: {e}",
                header.display()
            ))
        });
    let text = bindings.to_string();
    fs::write(out.join("cpython_headers.rs"), &text).expect("write bindings");
    text
}

/// What to do when libclang cannot be found (`why`: where clang-sys looked).
fn libclang_missing(why: &str) -> String {
    format!(
        "libclang not found. Building mighty_patcher from source reads the interpreter's C \
         headers with libclang (through bindgen) to check the struct layouts it relies on.\n\
         Install it, then build again:\n\
         \x20   Debian/Ubuntu:  apt-get install libclang-dev\n\
         \x20   Fedora/RHEL:    dnf install clang\n\
         \x20   Arch:           pacman -S clang\n\
         \x20   Alpine:         apk add clang-dev\n\
         or set LIBCLANG_PATH to the directory that holds libclang.so.\n\
         Or install a binary wheel, which needs neither libclang nor Rust: \
         pip install --only-binary mighty-patcher mighty-patcher\n\
         (clang-sys: {why})"
    )
}

/// Offsets and sizes from bindgen's layout tests, keyed by "Struct::field" and "Struct".
///
/// bindgen writes them as
/// `["Offset of field: S::f"][::std::mem::offset_of!(S, f) - 40usize];` and
/// `["Size of S"][::std::mem::size_of::<S>() - 160usize];`.
fn parse_offsets(bindings: &str) -> BTreeMap<String, usize> {
    // `typedef struct _typeobject PyTypeObject;` becomes `pub type PyTypeObject = _typeobject;`:
    // record the C typedef names under which the Rust code knows these structs.
    let mut aliases: BTreeMap<String, String> = BTreeMap::new();
    for line in bindings.lines() {
        if let Some(rest) = line.trim().strip_prefix("pub type ") {
            if let Some((alias, target)) = rest.trim_end_matches(';').split_once(" = ") {
                aliases.insert(target.to_owned(), alias.to_owned());
            }
        }
    }
    let mut found = BTreeMap::new();
    // rustfmt may split an assertion over two lines: scan the text, not lines.
    let mut rest = bindings;
    while let Some(at) = rest.find("[\"") {
        rest = &rest[at + 2..];
        let Some((label, after)) = rest.split_once("\"]") else {
            break;
        };
        let key = match (
            label.strip_prefix("Offset of field: "),
            label.strip_prefix("Size of "),
        ) {
            (Some(key), _) | (None, Some(key)) => key,
            _ => continue,
        };
        let Some(end) = after.find("usize]") else {
            break;
        };
        let Some((_, number)) = after[..end].rsplit_once(" - ") else {
            continue;
        };
        let Ok(value) = number.trim().parse::<usize>() else {
            continue;
        };
        let (record, field) = match key.split_once("::") {
            Some((record, field)) => (record.to_owned(), Some(field.to_owned())),
            None => (key.to_owned(), None),
        };
        let record = aliases.get(&record).cloned().unwrap_or(record);
        match field {
            Some(field) => found.insert(format!("{record}::{field}"), value),
            None => found.insert(record, value),
        };
        found.insert(key.to_owned(), value);
    }
    found
}

fn relied_on(py: &Interpreter, fields: &'static [Field]) -> impl Iterator<Item = &'static str> {
    let minor = py.minor;
    fields
        .iter()
        .filter(move |field| field.since <= minor && minor <= field.until)
        .map(|field| field.name)
}

fn lookup(offsets: &BTreeMap<String, usize>, include: &Path, key: &str) -> usize {
    match offsets.get(key) {
        Some(&value) => value,
        None => fail(&format!(
            "layout check: the headers in {} have no {key}; the Rust code relies on it",
            include.display()
        )),
    }
}

/// Compile-time assertions comparing `pyo3-ffi`'s declarations with the headers.
fn write_rust_checks(
    py: &Interpreter,
    include: &Path,
    offsets: &BTreeMap<String, usize>,
    out: &Path,
) {
    let mut text =
        String::from("// Generated by build.rs: pyo3-ffi's layouts against the headers.\n");
    for (name, fields) in PYO3_STRUCTS {
        let size = lookup(offsets, include, name);
        writeln!(
            text,
            "const _: () = assert!(::core::mem::size_of::<::pyo3_ffi::{name}>() == {size}, \
             \"layout mismatch: size of {name} in pyo3-ffi differs from {size} in {}\");",
            include.display()
        )
        .unwrap();
        for field in relied_on(py, fields) {
            let offset = lookup(offsets, include, &format!("{name}::{field}"));
            writeln!(
                text,
                "const _: () = assert!(::core::mem::offset_of!(::pyo3_ffi::{name}, {field}) == \
                 {offset}, \"layout mismatch: {name}.{field} is not at offset {offset} as in the \
                 headers of {}\");",
                include.display()
            )
            .unwrap();
        }
    }
    for (name, fields) in HEADER_ONLY {
        for field in relied_on(py, fields) {
            let offset = lookup(offsets, include, &format!("{name}::{field}"));
            writeln!(
                text,
                "const _: () = assert!(::core::mem::offset_of!(super::headers::{name}, {field}) \
                 == {offset}, \"layout mismatch: {name}.{field}\");"
            )
            .unwrap();
        }
    }
    fs::write(out.join("layout_checks.rs"), text).expect("write layout checks");
}

/// The same offsets as `_Static_assert`s, compiled by the system C compiler.
fn compile_c_checks(
    py: &Interpreter,
    include: &Path,
    offsets: &BTreeMap<String, usize>,
    out: &Path,
) {
    let mut text = String::from(
        "/* Generated by build.rs: bindgen's offsets checked by the C compiler. */\n\
         #define PY_SSIZE_T_CLEAN\n#include <Python.h>\n#include <stddef.h>\n",
    );
    for (name, fields) in PYO3_STRUCTS.iter().chain(HEADER_ONLY) {
        for field in relied_on(py, fields) {
            let offset = lookup(offsets, include, &format!("{name}::{field}"));
            writeln!(
                text,
                "_Static_assert(offsetof({name}, {field}) == {offset}, \
                 \"{name}.{field}: libclang and the C compiler disagree\");"
            )
            .unwrap();
        }
    }
    text.push_str("int mighty_patcher_layout_checked = 1;\n");
    let path = out.join("layout_check.c");
    fs::write(&path, text).expect("write C layout checks");
    cc::Build::new()
        .file(&path)
        .include(include)
        .warnings(false)
        .cargo_metadata(false)
        .try_compile_intermediates()
        .unwrap_or_else(|e| {
            fail(&format!(
                "C layout check failed (a C compiler is needed: apt-get install gcc, or dnf \
                 install gcc): {e}"
            ))
        });
}
