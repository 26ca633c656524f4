//! Checks hand-written prost messages against the descriptors of the `.proto` files they
//! mirror.
//!
//! The Rust side is read from the module's source with `syn`: every struct deriving
//! `prost::Message`, every enum deriving `prost::Oneof` or `prost::Enumeration`, and their
//! `#[prost(...)]` attributes, exactly what prost's derive macros read. Each struct is matched
//! with the message that prost would have generated it for (`summary::Value` for
//! `Summary.Value`), each field with the descriptor's field of the same name: number, type
//! (with the message or enum it names), label, packing, map key and value, and oneof. Both
//! ways: a field of the descriptor that the mirror leaves out must be listed with a reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet,
};
use syn::{Attribute, Fields, Item, LitStr};

/// What a mirror leaves out on purpose, each with the reason.
pub(crate) struct Omissions<'a> {
    /// `(message, field, why)`; the message by its name in the package (`Summary.Value`).
    pub(crate) fields: &'a [(&'a str, &'a str, &'a str)],
    /// `(enum, why)`: enums of which the mirror declares only some values.
    pub(crate) partial_enums: &'a [(&'a str, &'a str)],
}

/// The type of a field as both sides can state it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A scalar: a number, bool, string or bytes.
    Scalar(i32),
    /// A message, by full name (`.tensorboard.Summary`).
    Message(String),
    /// An enum, by full name.
    Enum(String),
    /// A map: the key (a scalar) and the value.
    Map(i32, Box<Kind>),
}

/// One field, as both sides can state it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FieldShape {
    name: String,
    number: i32,
    kind: Kind,
    repeated: bool,
    /// Repeated numbers written as one packed field.
    packed: bool,
    /// A proto3 `optional` scalar (explicit presence).
    explicit_presence: bool,
    /// The oneof holding the field.
    oneof: Option<String>,
}

fn type_name(ty: i32) -> String {
    Type::try_from(ty).map_or_else(|_| ty.to_string(), |t| format!("{t:?}"))
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Scalar(ty) => f.write_str(&type_name(*ty)),
            Kind::Message(name) => write!(f, "message {name}"),
            Kind::Enum(name) => write!(f, "enum {name}"),
            Kind::Map(key, value) => write!(f, "map<{}, {value}>", type_name(*key)),
        }
    }
}

impl std::fmt::Display for FieldShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}: {}", self.name, self.number, self.kind)?;
        if self.repeated {
            f.write_str(" repeated")?;
        }
        if self.packed {
            f.write_str(" packed")?;
        }
        if self.explicit_presence {
            f.write_str(" optional")?;
        }
        if let Some(oneof) = &self.oneof {
            write!(f, " in oneof {oneof}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The descriptors

/// Messages and enums of some `.proto` files, by full name.
struct Schema {
    messages: BTreeMap<String, (DescriptorProto, bool)>,
    enums: BTreeMap<String, EnumDescriptorProto>,
    /// Full names by the Rust path prost gives each (`summary::Value`), within one package.
    by_rust_path: BTreeMap<String, String>,
}

/// The snake-case module name prost derives from a message name (`XEvent` -> `x_event`).
fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let after_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let before_lower = i > 0
                && chars[i - 1].is_ascii_uppercase()
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if after_lower || before_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The Rust variant prost derives from an enum value (`DATA_CLASS_SCALAR` of `DataClass` ->
/// `Scalar`, `DT_FLOAT` of `DataType` -> `DtFloat`).
fn variant_name(enum_name: &str, value: &str) -> String {
    let prefix = format!("{}_", snake(enum_name).to_ascii_uppercase());
    let value = value.strip_prefix(&prefix).unwrap_or(value);
    value
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
            })
        })
        .collect()
}

/// The Rust field name prost derives from a oneof member's variant (`FileVersion` ->
/// `file_version`).
fn field_of_variant(variant: &str) -> String {
    snake(variant)
}

impl Schema {
    fn new(files: &[FileDescriptorProto]) -> Schema {
        let mut schema = Schema {
            messages: BTreeMap::new(),
            enums: BTreeMap::new(),
            by_rust_path: BTreeMap::new(),
        };
        for file in files {
            let proto3 = file.syntax() == "proto3";
            let scope = format!(".{}", file.package());
            for message in &file.message_type {
                schema.add_message(message, &scope, "", proto3);
            }
            for e in &file.enum_type {
                schema.add_enum(e, &scope, "");
            }
        }
        schema
    }

    fn add_message(&mut self, message: &DescriptorProto, scope: &str, rust: &str, proto3: bool) {
        let full = format!("{scope}.{}", message.name());
        self.by_rust_path
            .insert(format!("{rust}{}", message.name()), full.clone());
        let inner = format!("{rust}{}::", snake(message.name()));
        for nested in &message.nested_type {
            self.add_message(nested, &full, &inner, proto3);
        }
        for e in &message.enum_type {
            self.add_enum(e, &full, &inner);
        }
        self.messages.insert(full, (message.clone(), proto3));
    }

    fn add_enum(&mut self, e: &EnumDescriptorProto, scope: &str, rust: &str) {
        let full = format!("{scope}.{}", e.name());
        self.by_rust_path
            .insert(format!("{rust}{}", e.name()), full.clone());
        self.enums.insert(full, e.clone());
    }

    /// The fields of a message as its mirror should state them.
    fn fields(&self, full: &str) -> Vec<FieldShape> {
        let (message, proto3) = &self.messages[full];
        message
            .field
            .iter()
            .map(|field| self.field(message, field, *proto3))
            .collect()
    }

    fn field(
        &self,
        message: &DescriptorProto,
        field: &FieldDescriptorProto,
        proto3: bool,
    ) -> FieldShape {
        let repeated = field.label() == Label::Repeated;
        let kind = match field.r#type() {
            Type::Message => {
                let target = &self.messages[field.type_name()].0;
                if target.options.as_ref().is_some_and(|o| o.map_entry()) {
                    let key = target.field.iter().find(|f| f.number() == 1).unwrap();
                    let value = target.field.iter().find(|f| f.number() == 2).unwrap();
                    let value = match value.r#type() {
                        Type::Message => Kind::Message(value.type_name().to_owned()),
                        Type::Enum => Kind::Enum(value.type_name().to_owned()),
                        ty => Kind::Scalar(ty as i32),
                    };
                    Kind::Map(key.r#type() as i32, Box::new(value))
                } else {
                    Kind::Message(field.type_name().to_owned())
                }
            }
            Type::Enum => Kind::Enum(field.type_name().to_owned()),
            ty => Kind::Scalar(ty as i32),
        };
        let packable = !matches!(
            field.r#type(),
            Type::String | Type::Bytes | Type::Message | Type::Group
        );
        let packed = repeated
            && packable
            && field
                .options
                .as_ref()
                .and_then(|o| o.packed)
                .unwrap_or(proto3);
        let oneof = field
            .oneof_index
            .filter(|_| !field.proto3_optional())
            .map(|i| message.oneof_decl[i as usize].name().to_owned());
        let is_map = matches!(kind, Kind::Map(..));
        FieldShape {
            name: field.name().to_owned(),
            number: field.number(),
            kind,
            repeated: repeated && !is_map,
            packed,
            explicit_presence: field.proto3_optional(),
            oneof,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The mirror, read from its source

/// What a `#[prost(...)]` attribute says.
#[derive(Debug, Default)]
struct ProstAttr {
    /// The first word: a scalar type, `message`, or what a `key = "..."` names.
    ty: Option<String>,
    /// The text of `enumeration = "..."`, `oneof = "..."`, `btree_map = "..."` and so on.
    arg: Option<String>,
    repeated: bool,
    optional: bool,
    tag: Option<i32>,
    tags: Vec<i32>,
    packed: Option<bool>,
}

fn prost_attr(attrs: &[Attribute]) -> Option<ProstAttr> {
    let attr = attrs.iter().find(|a| a.path().is_ident("prost"))?;
    let mut out = ProstAttr::default();
    attr.parse_nested_meta(|meta| {
        let key = meta.path.get_ident().expect("a word").to_string();
        match key.as_str() {
            "repeated" => out.repeated = true,
            "optional" => out.optional = true,
            "required" => panic!("proto2 `required` is not expected in a mirror"),
            "tag" => out.tag = Some(meta.value()?.parse::<LitStr>()?.value().parse().unwrap()),
            "tags" => {
                let text = meta.value()?.parse::<LitStr>()?.value();
                out.tags = text.split(',').map(|t| t.trim().parse().unwrap()).collect();
            }
            "packed" => out.packed = Some(meta.value()?.parse::<LitStr>()?.value() == "true"),
            "default" => panic!("proto2 defaults are not expected in a mirror"),
            _ if meta.input.peek(syn::Token![=]) => {
                let value = meta.value()?.parse::<LitStr>()?.value();
                assert!(out.ty.is_none(), "two types in one #[prost] attribute");
                out.ty = Some(key);
                out.arg = Some(value);
            }
            _ => {
                assert!(out.ty.is_none(), "two types in one #[prost] attribute");
                out.ty = Some(key);
            }
        }
        Ok(())
    })
    .expect("a #[prost] attribute prost would accept");
    Some(out)
}

fn derives(attrs: &[Attribute], name: &str) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .any(|a| {
            let mut found = false;
            a.parse_nested_meta(|meta| {
                found |= meta.path.segments.last().is_some_and(|s| s.ident == name);
                Ok(())
            })
            .unwrap();
            found
        })
}

/// The scalar type prost's word for it names.
fn scalar(word: &str) -> Option<Type> {
    Some(match word {
        "double" => Type::Double,
        "float" => Type::Float,
        "int32" => Type::Int32,
        "int64" => Type::Int64,
        "uint32" => Type::Uint32,
        "uint64" => Type::Uint64,
        "sint32" => Type::Sint32,
        "sint64" => Type::Sint64,
        "fixed32" => Type::Fixed32,
        "fixed64" => Type::Fixed64,
        "sfixed32" => Type::Sfixed32,
        "sfixed64" => Type::Sfixed64,
        "bool" => Type::Bool,
        "string" => Type::String,
        "bytes" => Type::Bytes,
        _ => return None,
    })
}

/// A message, oneof or enum declared in the mirror.
struct Declared<T> {
    /// Its Rust path from the mirror's root, `::`-separated.
    path: String,
    item: T,
}

/// The items of a mirror module: messages, oneofs and enums, with the module they are in.
#[derive(Default)]
struct Mirror {
    messages: Vec<Declared<syn::ItemStruct>>,
    oneofs: Vec<Declared<syn::ItemEnum>>,
    enums: Vec<Declared<syn::ItemEnum>>,
}

impl Mirror {
    fn new(source: &str) -> Mirror {
        let file = syn::parse_file(source).expect("the mirror's source parses");
        let mut mirror = Mirror::default();
        mirror.collect(&file.items, &[]);
        mirror
    }

    fn collect(&mut self, items: &[Item], module: &[String]) {
        let path = |name: &syn::Ident| {
            let mut parts = module.to_vec();
            parts.push(name.to_string());
            parts.join("::")
        };
        for item in items {
            match item {
                Item::Mod(m) if m.ident != "tests" => {
                    let mut inner = module.to_vec();
                    inner.push(m.ident.to_string());
                    if let Some((_, items)) = &m.content {
                        self.collect(items, &inner);
                    }
                }
                Item::Struct(s) if derives(&s.attrs, "Message") => self.messages.push(Declared {
                    path: path(&s.ident),
                    item: s.clone(),
                }),
                Item::Enum(e) if derives(&e.attrs, "Oneof") => self.oneofs.push(Declared {
                    path: path(&e.ident),
                    item: e.clone(),
                }),
                Item::Enum(e) if derives(&e.attrs, "Enumeration") => self.enums.push(Declared {
                    path: path(&e.ident),
                    item: e.clone(),
                }),
                _ => {}
            }
        }
    }
}

/// Resolves a path written in module `module` (`super::Summary`, `x_event::Data`) to a path
/// from the mirror's root, as Rust does for a module without imports.
fn resolve(module: &str, written: &str) -> String {
    let mut parts: Vec<&str> = module.split("::").filter(|p| !p.is_empty()).collect();
    let mut written = written.trim();
    while let Some(rest) = written.strip_prefix("super::") {
        parts.pop().expect("`super` of the root module");
        written = rest;
    }
    parts.extend(written.split("::").map(str::trim));
    parts.join("::")
}

/// The module of a declared item's path.
fn module_of(path: &str) -> &str {
    path.rsplit_once("::").map_or("", |(module, _)| module)
}

/// The message type inside `Option<T>`, `Vec<T>`, `Box<T>`, a map's value, or `T`.
fn inner_type(ty: &syn::Type, map_value: bool) -> String {
    let syn::Type::Path(path) = ty else {
        panic!("a field's type is a path");
    };
    let last = path.path.segments.last().unwrap();
    let wrapper = ["Option", "Vec", "Box", "BTreeMap", "HashMap"];
    if wrapper.contains(&last.ident.to_string().as_str()) {
        let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
            panic!("`{}` without its type arguments", last.ident);
        };
        let types: Vec<&syn::Type> = args
            .args
            .iter()
            .filter_map(|a| match a {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect();
        let inner = if map_value {
            types[types.len() - 1]
        } else {
            types[0]
        };
        return inner_type(inner, false);
    }
    path.path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

impl Schema {
    /// The full proto name of a Rust path from the mirror's root, within `package`.
    fn full_name(&self, package: &str, rust_path: &str) -> Option<String> {
        let full = self.by_rust_path.get(rust_path)?;
        full.starts_with(&format!(".{package}."))
            .then(|| full.clone())
    }
}

/// One field of the mirror from its `#[prost]` attribute and Rust type.
fn mirror_field(
    schema: &Schema,
    package: &str,
    module: &str,
    name: String,
    attr: &ProstAttr,
    ty: &syn::Type,
    oneof: Option<String>,
) -> FieldShape {
    let word = attr.ty.as_deref().expect("a field type in #[prost]");
    let lookup = |rust_path: String| {
        schema
            .full_name(package, &rust_path)
            .unwrap_or_else(|| panic!("{name}: no proto type is mirrored by `{rust_path}`"))
    };
    let value_kind = |word: &str, value_ty: String| -> Kind {
        if let Some(t) = scalar(word) {
            Kind::Scalar(t as i32)
        } else if word == "message" {
            Kind::Message(lookup(resolve(module, &value_ty)))
        } else if let Some(e) = word
            .strip_prefix("enumeration(")
            .and_then(|w| w.strip_suffix(')'))
        {
            Kind::Enum(lookup(resolve(module, e)))
        } else {
            panic!("{name}: unknown #[prost] type `{word}`")
        }
    };
    let (kind, repeated) = match word {
        "map" | "btree_map" | "hash_map" => {
            let spec = attr.arg.as_deref().unwrap();
            let (key, value) = spec.split_once(',').unwrap();
            let key = scalar(key.trim()).unwrap_or_else(|| panic!("{name}: map key `{key}`"));
            let value = value_kind(value.trim(), inner_type(ty, true));
            (Kind::Map(key as i32, Box::new(value)), false)
        }
        "enumeration" => (
            Kind::Enum(lookup(resolve(module, attr.arg.as_deref().unwrap()))),
            attr.repeated,
        ),
        word => (value_kind(word, inner_type(ty, false)), attr.repeated),
    };
    let packable = matches!(kind, Kind::Enum(_))
        || matches!(kind, Kind::Scalar(t) if t != Type::String as i32 && t != Type::Bytes as i32);
    let number = attr.tag.expect("a tag in #[prost]");
    FieldShape {
        name,
        number,
        explicit_presence: attr.optional && !matches!(kind, Kind::Message(_)),
        // prost packs repeated numbers unless told `packed = "false"`.
        packed: repeated && packable && attr.packed.unwrap_or(true),
        kind,
        repeated,
        oneof,
    }
}

/// The fields of a mirrored message, oneof members included.
fn mirror_fields(
    schema: &Schema,
    package: &str,
    mirror: &Mirror,
    message: &Declared<syn::ItemStruct>,
) -> Vec<FieldShape> {
    let module = module_of(&message.path);
    let Fields::Named(named) = &message.item.fields else {
        panic!("{}: a message has named fields", message.path);
    };
    let mut fields = Vec::new();
    for field in &named.named {
        let ident = field.ident.as_ref().unwrap().to_string();
        let name = ident.strip_prefix("r#").unwrap_or(&ident).to_owned();
        let attr = prost_attr(&field.attrs)
            .unwrap_or_else(|| panic!("{}.{name} has no #[prost] attribute", message.path));
        if attr.ty.as_deref() != Some("oneof") {
            fields.push(mirror_field(
                schema, package, module, name, &attr, &field.ty, None,
            ));
            continue;
        }
        let path = resolve(module, attr.arg.as_deref().unwrap());
        let oneof = mirror
            .oneofs
            .iter()
            .find(|o| o.path == path)
            .unwrap_or_else(|| panic!("{}.{name}: no oneof enum `{path}`", message.path));
        let mut tags = Vec::new();
        for variant in &oneof.item.variants {
            let variant_attr = prost_attr(&variant.attrs)
                .unwrap_or_else(|| panic!("{path}::{} has no #[prost]", variant.ident));
            let Fields::Unnamed(types) = &variant.fields else {
                panic!("{path}::{}: one value per oneof member", variant.ident);
            };
            let member = mirror_field(
                schema,
                package,
                module_of(&oneof.path),
                field_of_variant(&variant.ident.to_string()),
                &variant_attr,
                &types.unnamed[0].ty,
                Some(name.clone()),
            );
            tags.push(member.number);
            fields.push(member);
        }
        let mut declared = attr.tags.clone();
        declared.sort_unstable();
        tags.sort_unstable();
        assert_eq!(
            declared, tags,
            "{}.{name}: `tags` lists the members",
            message.path
        );
    }
    fields
}

/// Checks the messages and enums of the mirror whose source is `source` against the files of
/// `set` in `package`. Panics with every difference found.
pub(crate) fn check(source: &str, set: &FileDescriptorSet, package: &str, omitted: &Omissions<'_>) {
    let schema = Schema::new(&set.file);
    let mirror = Mirror::new(source);
    let mut problems = String::new();
    let mut seen = BTreeSet::new();
    let local = |full: &str| full.trim_start_matches(&format!(".{package}.")).to_owned();

    for message in &mirror.messages {
        let Some(full) = schema.full_name(package, &message.path) else {
            writeln!(problems, "{}: no such message in {package}", message.path).unwrap();
            continue;
        };
        if !seen.insert(full.clone()) {
            writeln!(problems, "{}: mirrored twice", local(&full)).unwrap();
        }
        let wanted = schema.fields(&full);
        let declared = mirror_fields(&schema, package, &mirror, message);
        let by_name = |fields: &[FieldShape]| -> BTreeMap<String, FieldShape> {
            fields.iter().map(|f| (f.name.clone(), f.clone())).collect()
        };
        let (wanted, declared) = (by_name(&wanted), by_name(&declared));
        let name = local(&full);
        for (field, shape) in &wanted {
            let reason = omitted
                .fields
                .iter()
                .find(|(m, f, _)| *m == name && f == field);
            match (declared.get(field), reason) {
                (Some(mine), None) if mine != shape => writeln!(
                    problems,
                    "{name}.{field}: mirrored as `{mine}`, the descriptor says `{shape}`"
                )
                .unwrap(),
                (Some(_), Some(_)) => {
                    writeln!(problems, "{name}.{field}: mirrored, yet listed as left out").unwrap()
                }
                (None, None) => writeln!(
                    problems,
                    "{name}.{field} (`{shape}`) is missing and not listed as left out"
                )
                .unwrap(),
                _ => {}
            }
        }
        for (field, mine) in &declared {
            if !wanted.contains_key(field) {
                writeln!(
                    problems,
                    "{name}.{field} (`{mine}`) is not in the descriptor"
                )
                .unwrap();
            }
        }
    }
    for &(message, field, _) in omitted.fields {
        let full = format!(".{package}.{message}");
        let known = schema
            .messages
            .get(&full)
            .is_some_and(|(m, _)| m.field.iter().any(|f| f.name() == field));
        if !known || !seen.contains(&full) {
            writeln!(
                problems,
                "{message}.{field}: listed as left out of a mirrored message, but no such field"
            )
            .unwrap();
        }
    }

    for e in &mirror.enums {
        let Some(full) = schema.full_name(package, &e.path) else {
            writeln!(problems, "{}: no such enum in {package}", e.path).unwrap();
            continue;
        };
        let descriptor = &schema.enums[&full];
        let wanted: BTreeSet<(String, i32)> = descriptor
            .value
            .iter()
            .map(|v| (variant_name(descriptor.name(), v.name()), v.number()))
            .collect();
        let declared: BTreeSet<(String, i32)> = e
            .item
            .variants
            .iter()
            .map(|v| {
                let Some((_, syn::Expr::Lit(lit))) = &v.discriminant else {
                    panic!("{}::{} has no literal value", e.path, v.ident);
                };
                let syn::Lit::Int(n) = &lit.lit else {
                    panic!("{}::{} has no integer value", e.path, v.ident);
                };
                (v.ident.to_string(), n.base10_parse().unwrap())
            })
            .collect();
        let name = local(&full);
        for extra in declared.difference(&wanted) {
            writeln!(
                problems,
                "{name}::{} = {} is not in the descriptor",
                extra.0, extra.1
            )
            .unwrap();
        }
        let partial = omitted.partial_enums.iter().any(|(n, _)| *n == name);
        if !partial {
            for missing in wanted.difference(&declared) {
                writeln!(problems, "{name}::{} = {} is missing", missing.0, missing.1).unwrap();
            }
        }
        seen.insert(full);
    }
    for (name, _) in omitted.partial_enums {
        if !seen.contains(&format!(".{package}.{name}")) {
            writeln!(
                problems,
                "{name}: listed as partly mirrored, but not mirrored"
            )
            .unwrap();
        }
    }
    assert!(
        problems.is_empty(),
        "the mirror differs from the descriptors:\n{problems}"
    );
}

/// The `(field number, wire type)` pairs of the fields of `message` (named in `package`)
/// that a mirror declares, by its descriptor: what one message with every field set puts
/// on the wire. Wire types: 0 varint, 1 64-bit, 2 length-delimited (packed numbers too), 5
/// 32-bit.
pub(crate) fn wire_fields(
    set: &FileDescriptorSet,
    package: &str,
    message: &str,
    omitted: &Omissions<'_>,
) -> BTreeSet<(u32, u8)> {
    let schema = Schema::new(&set.file);
    let full = format!(".{package}.{message}");
    assert!(schema.messages.contains_key(&full), "no message {full}");
    schema
        .fields(&full)
        .into_iter()
        .filter(|f| {
            !omitted
                .fields
                .iter()
                .any(|&(m, name, _)| m == message && name == f.name)
        })
        .map(|f| {
            let wire_type = match f.kind {
                _ if f.packed => 2,
                Kind::Scalar(ty) => match Type::try_from(ty).expect("a known type") {
                    Type::Double | Type::Fixed64 | Type::Sfixed64 => 1,
                    Type::Float | Type::Fixed32 | Type::Sfixed32 => 5,
                    Type::String | Type::Bytes => 2,
                    _ => 0,
                },
                Kind::Enum(_) => 0,
                Kind::Message(_) | Kind::Map(..) => 2,
            };
            (f.number as u32, wire_type)
        })
        .collect()
}

/// Decodes a `FileDescriptorSet`.
pub(crate) fn descriptor_set(bytes: &[u8]) -> FileDescriptorSet {
    FileDescriptorSet::decode(bytes).expect("a FileDescriptorSet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_names_as_prost_derives_them() {
        assert_eq!(snake("XEvent"), "x_event");
        assert_eq!(snake("TensorShapeProto"), "tensor_shape_proto");
        assert_eq!(snake("RunMetadata"), "run_metadata");
        assert_eq!(
            field_of_variant("ObsoleteOldStyleHistogram"),
            "obsolete_old_style_histogram"
        );
        assert_eq!(field_of_variant("S"), "s");
        assert_eq!(
            variant_name("DataClass", "DATA_CLASS_BLOB_SEQUENCE"),
            "BlobSequence"
        );
        assert_eq!(variant_name("DataType", "DT_COMPLEX64"), "DtComplex64");
        assert_eq!(
            variant_name("SessionStatus", "STATUS_UNSPECIFIED"),
            "StatusUnspecified"
        );
        assert_eq!(
            resolve("summary::value", "super::super::TensorProto"),
            "TensorProto"
        );
        assert_eq!(resolve("attr_value", "ListValue"), "attr_value::ListValue");
        assert_eq!(resolve("", "x_event::Data"), "x_event::Data");
    }

    /// A small mirror (as source text) of a small file: a message with a oneof, a map, a
    /// nested message and an enum.
    const SOURCE: &str = r#"
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Outer {
            #[prost(int64, tag = "1")]
            pub id: i64,
            #[prost(oneof = "outer::Choice", tags = "2, 3")]
            pub choice: Option<outer::Choice>,
            #[prost(btree_map = "string, message", tag = "4")]
            pub inner: BTreeMap<String, outer::Inner>,
            #[prost(enumeration = "Color", repeated, tag = "5")]
            pub colors: Vec<i32>,
        }
        pub mod outer {
            #[derive(Clone, PartialEq, prost::Oneof)]
            pub enum Choice {
                #[prost(string, tag = "2")]
                Name(String),
                #[prost(message, tag = "3")]
                Nested(Inner),
            }
            #[derive(Clone, PartialEq, prost::Message)]
            pub struct Inner {
                #[prost(double, tag = "1")]
                pub value: f64,
            }
        }
        #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
        #[repr(i32)]
        pub enum Color {
            Unknown = 0,
            Red = 1,
        }
    "#;

    fn field(name: &str, number: i32, ty: Type, type_name: &str) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            r#type: Some(ty as i32),
            label: Some(Label::Optional as i32),
            type_name: (!type_name.is_empty()).then(|| type_name.into()),
            ..Default::default()
        }
    }

    /// The file the mirror above mirrors.
    fn file() -> FileDescriptorProto {
        let repeated = |mut f: FieldDescriptorProto| {
            f.label = Some(Label::Repeated as i32);
            f
        };
        let in_oneof = |mut f: FieldDescriptorProto| {
            f.oneof_index = Some(0);
            f
        };
        let inner = DescriptorProto {
            name: Some("Inner".into()),
            field: vec![field("value", 1, Type::Double, "")],
            ..Default::default()
        };
        let entry = DescriptorProto {
            name: Some("InnerEntry".into()),
            field: vec![
                field("key", 1, Type::String, ""),
                field("value", 2, Type::Message, ".p.Outer.Inner"),
            ],
            options: Some(prost_types::MessageOptions {
                map_entry: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let outer = DescriptorProto {
            name: Some("Outer".into()),
            field: vec![
                field("id", 1, Type::Int64, ""),
                in_oneof(field("name", 2, Type::String, "")),
                in_oneof(field("nested", 3, Type::Message, ".p.Outer.Inner")),
                repeated(field("inner", 4, Type::Message, ".p.Outer.InnerEntry")),
                repeated(field("colors", 5, Type::Enum, ".p.Color")),
            ],
            nested_type: vec![inner, entry],
            oneof_decl: vec![prost_types::OneofDescriptorProto {
                name: Some("choice".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let color = EnumDescriptorProto {
            name: Some("Color".into()),
            value: ["COLOR_UNKNOWN", "COLOR_RED"]
                .iter()
                .zip(0..)
                .map(|(name, number)| prost_types::EnumValueDescriptorProto {
                    name: Some((*name).into()),
                    number: Some(number),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        FileDescriptorProto {
            name: Some("p.proto".into()),
            package: Some("p".into()),
            message_type: vec![outer],
            enum_type: vec![color],
            syntax: Some("proto3".into()),
            ..Default::default()
        }
    }

    const NOTHING: Omissions<'static> = Omissions {
        fields: &[],
        partial_enums: &[],
    };

    /// The problems `check` finds in the small mirror against `file`.
    fn problems(file: FileDescriptorProto, omitted: &Omissions<'_>) -> String {
        let set = FileDescriptorSet { file: vec![file] };
        let result = std::panic::catch_unwind(|| check(SOURCE, &set, "p", omitted));
        match result {
            Ok(()) => String::new(),
            Err(payload) => payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default(),
        }
    }

    #[test]
    fn a_faithful_mirror_passes() {
        assert_eq!(problems(file(), &NOTHING), "");
        let wire = wire_fields(
            &FileDescriptorSet { file: vec![file()] },
            "p",
            "Outer",
            &NOTHING,
        );
        assert_eq!(wire, [(1, 0), (2, 2), (3, 2), (4, 2), (5, 2)].into());
    }

    /// A change to the small file.
    type Change = fn(&mut FileDescriptorProto);

    #[test]
    fn every_kind_of_difference_is_found() {
        let cases: [(&str, Change); 8] = [
            (
                "Outer.id: mirrored as `id = 1: Int64`, the descriptor says `id = 6: Int64`",
                |f| f.message_type[0].field[0].number = Some(6),
            ),
            (
                "Outer.id: mirrored as `id = 1: Int64`, the descriptor says `id = 1: Sint64`",
                |f| f.message_type[0].field[0].r#type = Some(Type::Sint64 as i32),
            ),
            ("the descriptor says `name = 2: String`", |f| {
                f.message_type[0].field[1].oneof_index = None
            }),
            (
                "the descriptor says `inner = 4: map<String, message .p.Outer>`",
                |f| f.message_type[0].nested_type[1].field[1].type_name = Some(".p.Outer".into()),
            ),
            (
                "the descriptor says `colors = 5: enum .p.Color repeated`",
                |f| {
                    f.message_type[0].field[4].options = Some(prost_types::FieldOptions {
                        packed: Some(false),
                        ..Default::default()
                    })
                },
            ),
            (
                "Outer.extra (`extra = 9: Bool`) is missing and not listed as left out",
                |f| {
                    f.message_type[0]
                        .field
                        .push(field("extra", 9, Type::Bool, ""))
                },
            ),
            ("Outer.id (`id = 1: Int64`) is not in the descriptor", |f| {
                f.message_type[0].field.remove(0);
            }),
            ("Color::Red = 1 is not in the descriptor", |f| {
                f.enum_type[0].value[1].number = Some(2)
            }),
        ];
        for (wanted, change) in cases {
            let mut f = file();
            change(&mut f);
            let found = problems(f, &NOTHING);
            assert!(found.contains(wanted), "wanted {wanted:?} in:\n{found}");
        }
        // A field left out is fine when listed with a reason, and a listed field that the
        // mirror declares after all is a problem.
        let mut f = file();
        f.message_type[0]
            .field
            .push(field("extra", 9, Type::Bool, ""));
        let listed = Omissions {
            fields: &[("Outer", "extra", "not written")],
            partial_enums: &[],
        };
        assert_eq!(problems(f, &listed), "");
        let stale = Omissions {
            fields: &[("Outer", "id", "not written")],
            partial_enums: &[],
        };
        assert!(problems(file(), &stale).contains("Outer.id: mirrored, yet listed as left out"));
    }
}
