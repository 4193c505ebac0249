//! Light or dark, as the desktop says: the XDG desktop portal's `color-scheme` setting
//! (`org.freedesktop.appearance`, on the session bus; GNOME, KDE and others answer it), read
//! at start and followed while the window is open. `ALTDISK_GUI_THEME=light|dark` overrides
//! it; without a portal, a `GTK_THEME` ending in `:dark` means dark, else light.
//!
//! iced can do this itself (`linux-theme-detection`), but that builds a second zbus (5.x)
//! with another async runtime; the few calls below use the zbus the D-Bus client uses.

use iced::futures::{SinkExt, Stream, StreamExt};
use zbus::OwnedVariant as OwnedValue;

const PORTAL: &str = "org.freedesktop.portal.Desktop";
const PATH: &str = "/org/freedesktop/portal/desktop";
const SETTINGS: &str = "org.freedesktop.portal.Settings";
const NAMESPACE: &str = "org.freedesktop.appearance";
const KEY: &str = "color-scheme";

/// What the environment says before asking the portal: `Some(dark)` when it decides.
pub fn from_env() -> Option<bool> {
    if let Ok(v) = std::env::var("ALTDISK_GUI_THEME") {
        match v.as_str() {
            "dark" => return Some(true),
            "light" => return Some(false),
            _ => {}
        }
    }
    None
}

fn gtk_theme_dark() -> bool {
    std::env::var("GTK_THEME").map(|t| t.to_ascii_lowercase().ends_with(":dark")).unwrap_or(false)
}

/// The portal's value: 1 prefers dark, 2 prefers light, 0 has no preference.
fn is_dark(v: &OwnedValue) -> Option<bool> {
    // ReadOne answers the value; the older Read wraps it in one more variant.
    let inner: zbus::Variant<'_> = match &**v {
        zbus::Variant::Variant(b) => (**b).try_clone().ok()?,
        other => other.try_clone().ok()?,
    };
    match u32::try_from(inner).ok()? {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    }
}

async fn read(conn: &zbus::Connection) -> Option<bool> {
    let p = zbus::Proxy::new(conn, PORTAL, PATH, SETTINGS).await.ok()?;
    let v: OwnedValue = match p.call("ReadOne", &(NAMESPACE, KEY)).await {
        Ok(v) => v,
        Err(_) => p.call("Read", &(NAMESPACE, KEY)).await.ok()?,
    };
    is_dark(&v)
}

/// The desktop's choice now, asked before the window opens so its first frame is drawn in
/// the right colours; gives up after `limit` (no portal, a slow session bus).
pub fn read_now(limit: std::time::Duration) -> Option<bool> {
    if let Some(d) = from_env() {
        return Some(d);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    let asked = rt.block_on(async {
        tokio::time::timeout(limit, async {
            let conn = zbus::Connection::session().await.ok()?;
            read(&conn).await
        })
        .await
    });
    Some(asked.ok().flatten().unwrap_or_else(gtk_theme_dark))
}

/// Dark or not, now and whenever the desktop changes it. Parks (sends nothing more) when
/// there is no session bus or no portal: the theme then stays as it started.
pub fn changes() -> impl Stream<Item = bool> {
    iced::stream::channel(4, async |mut out: iced::futures::channel::mpsc::Sender<bool>| {
        if from_env().is_some() {
            return;
        }
        let Ok(conn) = zbus::Connection::session().await else {
            let _ = out.send(gtk_theme_dark()).await;
            return;
        };
        let _ = out.send(read(&conn).await.unwrap_or_else(gtk_theme_dark)).await;
        let Ok(p) = zbus::Proxy::new(&conn, PORTAL, PATH, SETTINGS).await else { return };
        let Ok(mut changed) = p.receive_signal("SettingChanged").await else { return };
        while let Some(msg) = changed.next().await {
            let Ok((ns, key, value)) = msg.body().deserialize::<(String, String, OwnedValue)>() else { continue };
            if ns == NAMESPACE && key == KEY {
                if let Some(dark) = is_dark(&value) {
                    let _ = out.send(dark).await;
                }
            }
        }
    })
}
