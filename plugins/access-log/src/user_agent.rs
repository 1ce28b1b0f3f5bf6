//! The `user_agent_class` of a record: `crawler`, `tool`, `browser` or
//! `unknown`, from the `User-Agent` header alone.
//!
//! This is a heuristic on tokens that the common agents write, not a
//! database of agents: an agent that imitates a browser is a browser here.

/// Substrings, in lower case, that mark a crawler anywhere in the header,
/// compared without ASCII case: `Googlebot`, `bingbot`, `Baiduspider`,
/// `Yahoo! Slurp`, `facebookexternalhit`, `ia_archiver`, and so on.
const CRAWLER_MARKERS: [&str; 8] = [
    "bot",
    "crawl",
    "spider",
    "slurp",
    "facebookexternalhit",
    "mediapartners-google",
    "feedfetcher",
    "ia_archiver",
];

/// Product names, compared without ASCII case, of HTTP libraries and
/// command-line clients. A header is a tool's when its first product name
/// (the text before the first `/`, blank, `;` or `(`) is one of these.
const TOOL_PRODUCTS: [&str; 30] = [
    "curl",
    "wget",
    "httpie",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "python",
    "aiohttp",
    "go-http-client",
    "java",
    "okhttp",
    "apache-httpclient",
    "jakarta",
    "libwww-perl",
    "lwp-trivial",
    "ruby",
    "faraday",
    "axios",
    "node-fetch",
    "node",
    "undici",
    "got",
    "guzzlehttp",
    "php",
    "dart",
    "reqwest",
    "postmanruntime",
    "insomnia",
    "winhttp",
    "powershell",
];

/// Class of the agent that sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAgentClass {
    /// A search engine, archive or other automated crawler.
    Crawler,
    /// An HTTP library or a command-line client.
    Tool,
    /// A web browser: the header starts with `Mozilla/` or `Opera/` and is
    /// neither a crawler's nor a tool's.
    Browser,
    /// No header, an empty one, or one that matches none of the above.
    Unknown,
}

impl UserAgentClass {
    /// Returns the value written to `user_agent_class`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crawler => "crawler",
            Self::Tool => "tool",
            Self::Browser => "browser",
            Self::Unknown => "unknown",
        }
    }
}

/// For each byte, whether some crawler marker starts with it in either case,
/// so that the scan skips other bytes with one table look-up.
static MARKER_STARTS: [bool; 256] = {
    let mut table = [false; 256];
    let mut index = 0;
    while index < CRAWLER_MARKERS.len() {
        let first = CRAWLER_MARKERS[index].as_bytes()[0];
        table[first as usize] = true;
        table[first.to_ascii_uppercase() as usize] = true;
        index += 1;
    }
    table
};

/// Returns whether a crawler marker occurs in `text`, without ASCII case.
fn has_crawler_marker(text: &str) -> bool {
    let bytes = text.as_bytes();
    (0..bytes.len()).any(|start| {
        let first = bytes[start];
        if !MARKER_STARTS[usize::from(first)] {
            return false;
        }
        let first = first.to_ascii_lowercase();
        CRAWLER_MARKERS.iter().any(|marker| {
            let marker = marker.as_bytes();
            marker[0] == first
                && bytes[start..]
                    .get(..marker.len())
                    .is_some_and(|candidate| candidate.eq_ignore_ascii_case(marker))
        })
    })
}

/// Classifies a `User-Agent` header as logged. Crawler markers are checked
/// first, so `Mozilla/5.0 (compatible; Googlebot/2.1)` is a crawler.
pub fn classify(user_agent: Option<&str>) -> UserAgentClass {
    let Some(user_agent) = user_agent.filter(|text| !text.is_empty()) else {
        return UserAgentClass::Unknown;
    };
    if has_crawler_marker(user_agent) {
        return UserAgentClass::Crawler;
    }
    let product_end = user_agent
        .bytes()
        .position(|byte| matches!(byte, b'/' | b' ' | b'\t' | b';' | b'('))
        .unwrap_or(user_agent.len());
    let product = &user_agent[..product_end];
    // Most headers are a browser's, and no tool is called `Mozilla`.
    let is_browser_product = product == "Mozilla" || product == "Opera";
    if is_browser_product && user_agent[product_end..].starts_with('/') {
        return UserAgentClass::Browser;
    }
    if TOOL_PRODUCTS
        .iter()
        .any(|tool| tool.eq_ignore_ascii_case(product))
    {
        return UserAgentClass::Tool;
    }
    UserAgentClass::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(user_agent: &str) -> &'static str {
        classify(Some(user_agent)).as_str()
    }

    #[test]
    fn crawlers() {
        for user_agent in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
            "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "ia_archiver (+http://www.alexa.com/site/help/webmasters; crawler@alexa.com)",
            "ExampleBot/2.1 (+https://bot.example.com/)",
            "Mozilla/5.0 (compatible; ExampleSearchBot/6.0; +https://search.example.com/bot.html)",
            "ExampleCrawler/0.3",
        ] {
            assert_eq!(class_of(user_agent), "crawler", "{user_agent}");
        }
    }

    #[test]
    fn tools() {
        for user_agent in [
            "curl/8.5.0",
            "Wget/1.14 (linux-gnu)",
            "python-requests/2.31.0",
            "Python-urllib/3.11",
            "Go-http-client/1.1",
            "Java/1.8.0_151",
            "okhttp/4.9.3",
            "Apache-HttpClient/4.5.13 (Java/11.0.16)",
            "libwww-perl/6.67",
            "PostmanRuntime/7.36.0",
            "GuzzleHttp/7",
            "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        ] {
            assert_eq!(class_of(user_agent), "tool", "{user_agent}");
        }
    }

    #[test]
    fn browsers() {
        for user_agent in [
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36",
            "Mozilla/5.0 (Windows NT 6.1; rv:11.0) Gecko/20100101 Firefox/11.0",
            "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
            "Opera/9.80 (Windows NT 6.1) Presto/2.12.388 Version/12.16",
        ] {
            assert_eq!(class_of(user_agent), "browser", "{user_agent}");
        }
    }

    #[test]
    fn unknown_agents() {
        assert_eq!(classify(None).as_str(), "unknown");
        assert_eq!(class_of(""), "unknown");
        assert_eq!(
            class_of("ExampleApp/2.1.0 (Linux; U; Android 5.1)"),
            "unknown"
        );
        assert_eq!(class_of("Dalvik/2.1.0 (Linux; U; Android 9)"), "unknown");
        // A product name that only starts like a tool's is not one.
        assert_eq!(class_of("curlew-app/1.0"), "unknown");
        assert_eq!(class_of("Mozilla"), "unknown");
        assert_eq!(class_of("Mozilla (compatible)"), "unknown");
    }
}
