//! Finding the sandwich in a lesson file: the kernel (and signature) that every user turn
//! shares, so the bare probe can be recovered. The engine scores the delta against the bare
//! probe; a kernel of a few thousand characters in the prompt would swamp echo and uplift.
//! Pure.

/// Kernel and signature around every prompt of a file, as `config::sandwich` puts them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sandwich {
    pub kernel: Option<String>,
    pub signature: Option<String>,
}

impl Sandwich {
    /// The bare prompt of `user`, or `user` itself when it is not wrapped in this sandwich.
    #[must_use]
    pub fn strip<'a>(&self, user: &'a str) -> &'a str {
        let Some(kernel) = &self.kernel else { return user };
        let Some(rest) = user.strip_prefix(kernel.as_str()).and_then(|r| r.strip_prefix("\n\n")) else {
            return user;
        };
        match &self.signature {
            Some(sig) => rest.strip_suffix(sig.as_str()).and_then(|r| r.strip_suffix("\n\n")).unwrap_or(rest),
            None => rest,
        }
    }

    /// Whether `user` is exactly this sandwich around a non-empty prompt.
    fn wraps(&self, user: &str) -> bool {
        let bare = self.strip(user);
        bare.len() < user.len() && !bare.trim().is_empty()
    }
}

/// The longest prefix two strings share, on a character boundary.
fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let mut n = n.min(a.len());
    while !a.is_char_boundary(n) {
        n -= 1;
    }
    &a[..n]
}

fn common_suffix<'a>(a: &'a str, b: &str) -> &'a str {
    let n = a.bytes().rev().zip(b.bytes().rev()).take_while(|(x, y)| x == y).count();
    let mut start = a.len() - n.min(a.len());
    while !a.is_char_boundary(start) {
        start += 1;
    }
    &a[start..]
}

/// Detects the sandwich shared by `users`: the common prefix up to its last blank line is the
/// kernel, and (with a kernel) the common suffix after its first blank line the signature. Needs
/// at least two different user turns; anything that does not wrap every turn is dropped.
pub fn detect<'a>(users: impl IntoIterator<Item = &'a str>) -> Sandwich {
    let mut users = users.into_iter();
    let Some(first) = users.next() else { return Sandwich::default() };
    let (mut prefix, mut suffix, mut distinct) = (first, first, false);
    let mut all = vec![first];
    for u in users {
        distinct |= u != first;
        prefix = common_prefix(prefix, u);
        suffix = common_suffix(suffix, u);
        all.push(u);
    }
    if !distinct {
        return Sandwich::default();
    }
    let Some(cut) = prefix.rfind("\n\n").filter(|&i| i > 0) else { return Sandwich::default() };
    let kernel = &prefix[..cut];
    let signature = suffix.find("\n\n").map(|i| &suffix[i + 2..]).filter(|s| !s.trim().is_empty());
    let with_sig = Sandwich { kernel: Some(kernel.to_owned()), signature: signature.map(str::to_owned) };
    if all.iter().all(|u| with_sig.wraps(u)) {
        return with_sig;
    }
    let kernel_only = Sandwich { kernel: Some(kernel.to_owned()), signature: None };
    if all.iter().all(|u| kernel_only.wraps(u)) { kernel_only } else { Sandwich::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sandwich;

    #[test]
    fn a_shared_kernel_and_signature_are_found_and_stripped() {
        let k = "KERNEL line one\n{\"axioms\": []}";
        let users: Vec<String> = ["What is a mesh?", "Explain forgetting.\n\nIn two parts.", "Why?"]
            .iter()
            .map(|p| sandwich(Some(k), Some("- sig"), p))
            .collect();
        let s = detect(users.iter().map(String::as_str));
        assert_eq!(s, Sandwich { kernel: Some(k.into()), signature: Some("- sig".into()) });
        assert_eq!(s.strip(&users[1]), "Explain forgetting.\n\nIn two parts.");
        let no_sig: Vec<String> = ["a?", "b?"].iter().map(|p| sandwich(Some(k), None, p)).collect();
        let s = detect(no_sig.iter().map(String::as_str));
        assert_eq!((s.kernel.as_deref(), s.signature), (Some(k), None));
    }

    #[test]
    fn plain_prompts_have_no_sandwich() {
        assert_eq!(detect(["What is a mesh?", "What is a tree?"]), Sandwich::default());
        // One turn, or all the same: nothing to compare against.
        assert_eq!(detect(["K\n\nQ"]), Sandwich::default());
        assert_eq!(detect(["K\n\nQ", "K\n\nQ"]), Sandwich::default());
        // A shared first paragraph that is the whole of one prompt is not a kernel.
        assert_eq!(detect(["Intro\n\nQ1", "Intro\n\n"]), Sandwich::default());
        let s = Sandwich { kernel: Some("K".into()), signature: None };
        assert_eq!(s.strip("not wrapped"), "not wrapped");
        assert_eq!(detect(["é\n\nà", "é\n\nè"]).kernel.as_deref(), Some("é"));
    }
}
