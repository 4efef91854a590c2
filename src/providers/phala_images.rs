//! Phala Cloud OS images on the wire: `GET /cvms/{id}/available-os-images` (seed 000: the
//! images a CVM can move to, grouped by version with prod/dev variants) and the catalog
//! `GET /os-images` (paginated `{items, pages}`; the SDK's `getOsImages`).

use serde_json::Value;

/// One OS image variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsImage {
    /// e.g. `dstack-0.5.5`; what the API reports as a CVM's image.
    pub name: String,
    /// e.g. `dstack-0.5.5-e18f5407`.
    pub slug: String,
    pub os_image_hash: Option<String>,
    /// (major, minor, patch[, build]).
    pub version: Vec<u64>,
    pub dev: bool,
    /// Whether the CVM asked about runs it now (always false from the catalog).
    pub current: bool,
}

impl OsImage {
    pub fn version_string(&self) -> String {
        self.version.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
    }
}

fn version(v: Option<&Value>) -> Option<Vec<u64>> {
    match v? {
        Value::Array(parts) => parts.iter().map(Value::as_u64).collect(),
        Value::String(s) => s.trim().trim_start_matches('v').split('.').map(|p| p.parse().ok()).collect(),
        _ => None,
    }
}

fn variant(v: &Value, version: &[u64], dev: bool) -> Result<Option<OsImage>, String> {
    if v.is_null() {
        return Ok(None);
    }
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let name = field("name").ok_or("an image variant has no `name`")?;
    Ok(Some(OsImage {
        slug: field("slug").unwrap_or_else(|| name.clone()),
        name,
        os_image_hash: field("os_image_hash"),
        version: version.to_vec(),
        dev,
        current: v.get("is_current").and_then(Value::as_bool).unwrap_or(false),
    }))
}

/// `[{version: [0,5,5], prod: {...}|null, dev: {...}|null}]`.
pub fn parse_available(v: &Value) -> Result<Vec<OsImage>, String> {
    let items = v.as_array().ok_or("expected a list of OS image versions")?;
    let mut out = Vec::new();
    for item in items {
        let ver = version(item.get("version")).ok_or("an OS image entry has no readable `version`")?;
        for (key, dev) in [("prod", false), ("dev", true)] {
            if let Some(img) = variant(item.get(key).unwrap_or(&Value::Null), &ver, dev)? {
                out.push(img);
            }
        }
    }
    Ok(out)
}

/// One page of `GET /os-images`: the images and the number of pages.
pub fn parse_catalog_page(v: &Value) -> Result<(Vec<OsImage>, u64), String> {
    let items = v.get("items").and_then(Value::as_array).ok_or("expected `{items: [...]}`")?;
    let mut out = Vec::new();
    for it in items {
        let ver = version(it.get("version")).ok_or("an OS image has no readable `version`")?;
        let dev = it.get("is_dev").and_then(Value::as_bool).unwrap_or(false);
        out.extend(variant(it, &ver, dev)?);
    }
    Ok((out, v.get("pages").and_then(Value::as_u64).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_seed_shapes() {
        let v = json!([
            {"version": [0, 5, 5, 1], "prod": {"name": "dstack-0.5.5", "slug": "dstack-0.5.5-e18f5407", "os_image_hash": "ab", "is_current": true}, "dev": null},
            {"version": [0, 5, 4], "prod": null, "dev": {"name": "dstack-dev-0.5.4", "slug": "dstack-dev-0.5.4-1", "os_image_hash": null}}
        ]);
        let imgs = parse_available(&v).unwrap();
        assert_eq!(imgs.len(), 2);
        assert_eq!(imgs[0].version_string(), "0.5.5.1");
        assert!(imgs[0].current && !imgs[0].dev);
        assert!(imgs[1].dev && imgs[1].os_image_hash.is_none());
        assert!(parse_available(&json!({"detail": "x"})).is_err());

        let page =
            json!({"items": [{"name": "dstack-0.5.3", "slug": "s", "version": "0.5.3", "is_dev": false}], "pages": 3});
        let (imgs, pages) = parse_catalog_page(&page).unwrap();
        assert_eq!((imgs[0].version.clone(), pages), (vec![0, 5, 3], 3));
    }
}
