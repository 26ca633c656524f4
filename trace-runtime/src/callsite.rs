//! Call sites: one `static` per `#[traced]` function or `trace!` block, registered with
//! `inventory` before `main` so that every instrumented site is known, hit or not.

/// A place in the source that records events. Created by the macros as a `static`; events
/// refer to it by address, never by copying its name.
#[derive(Debug)]
pub struct Callsite {
    name: &'static str,
    module_path: &'static str,
    file: &'static str,
    line: u32,
    level: u8,
    /// The key of the site's first metadata, whose number an event record can carry inline
    /// (see `record`); empty when the site has none.
    inline_key: &'static str,
}

impl Callsite {
    /// A call site. Used by the macro expansions; `level` is 1 (critical), 2 (info) or 3
    /// (verbose).
    pub const fn new(
        name: &'static str,
        module_path: &'static str,
        file: &'static str,
        line: u32,
        level: u8,
    ) -> Callsite {
        Callsite {
            name,
            module_path,
            file,
            line,
            level,
            inline_key: "",
        }
    }

    /// The site with `key` as its first metadata key: the macros pass it when a scope has
    /// metadata, so that a number under that key can travel inside the event's own record.
    pub const fn with_inline_key(self, key: &'static str) -> Callsite {
        Callsite {
            inline_key: key,
            ..self
        }
    }

    /// The event name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The module that holds the site.
    pub fn module_path(&self) -> &'static str {
        self.module_path
    }

    /// The source file.
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// The source line.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The level: recorded when the session's level is at least this.
    #[inline(always)]
    pub fn level(&self) -> u8 {
        self.level
    }

    /// The key set by [`Callsite::with_inline_key`], if any.
    pub fn inline_key(&self) -> Option<&'static str> {
        (!self.inline_key.is_empty()).then_some(self.inline_key)
    }
}

/// Call sites are compared by identity: each `static` is its own site.
impl PartialEq for Callsite {
    fn eq(&self, other: &Callsite) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Callsite {}

/// The `inventory` entry that points at a call site's `static`.
#[doc(hidden)]
pub struct Registration(pub &'static Callsite);

inventory::collect!(Registration);

/// Every instrumented site in the binary, hit or not, in no particular order.
pub fn callsites() -> impl Iterator<Item = &'static Callsite> {
    inventory::iter::<Registration>
        .into_iter()
        .map(|registration| registration.0)
}

/// Declares a call site `static`, registers it, and evaluates to `&'static Callsite`; the
/// optional third argument is its inline key (see [`Callsite::with_inline_key`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __callsite {
    ($name:expr, $level:expr) => {
        $crate::__private::callsite!($name, $level, "")
    };
    ($name:expr, $level:expr, $inline_key:expr) => {{
        static __TRACE_CALLSITE: $crate::__private::Callsite = $crate::__private::Callsite::new(
            $name,
            ::core::module_path!(),
            ::core::file!(),
            ::core::line!(),
            $level,
        )
        .with_inline_key($inline_key);
        $crate::__private::inventory::submit! {
            $crate::__private::Registration(&__TRACE_CALLSITE)
        }
        &__TRACE_CALLSITE
    }};
}
