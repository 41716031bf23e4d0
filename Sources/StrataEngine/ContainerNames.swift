/// Names for containers created without `--name`, in Docker's form: an adjective and a surname
/// joined by `_` (`brave_lovelace`). 60 × 80 = 4,800 pairs; after a few taken pairs a digit is
/// added, as Docker does.
enum ContainerNames {
    static let adjectives = [
        "agile", "amber", "ancient", "bold", "brave", "bright", "calm", "careful", "clever", "cosmic",
        "crisp", "curious", "daring", "deep", "eager", "earnest", "elated", "epic", "fervent", "fond",
        "gentle", "glad", "golden", "happy", "hardy", "honest", "humble", "jolly", "keen", "kind",
        "layered", "lively", "loyal", "lucid", "merry", "mighty", "modest", "nifty", "noble", "patient",
        "peaceful", "plucky", "polished", "proud", "quick", "quiet", "radiant", "serene", "sharp", "silent",
        "steady", "stoic", "sturdy", "sunny", "swift", "tender", "tidy", "upbeat", "vivid", "witty",
    ]
    static let surnames = [
        "agnesi", "archimedes", "babbage", "banach", "bardeen", "bell", "bohr", "boole", "borg", "bose",
        "cantor", "carson", "cerf", "chandrasekhar", "curie", "darwin", "dijkstra", "einstein", "euclid", "euler",
        "faraday", "fermat", "fermi", "feynman", "franklin", "galileo", "gauss", "germain", "goodall", "hamilton",
        "hawking", "heisenberg", "hertz", "hilbert", "hodgkin", "hopper", "hypatia", "johnson", "joliot", "kepler",
        "knuth", "kowalevski", "lamarr", "leakey", "leibniz", "lovelace", "lyell", "maxwell", "meitner", "mendel",
        "mirzakhani", "morse", "newton", "nobel", "noether", "pascal", "pasteur", "planck", "poincare", "ramanujan",
        "ritchie", "rubin", "sagan", "shannon", "smith", "steno", "tesla", "thompson", "torvalds", "turing",
        "vaughan", "volta", "wegener", "wiles", "wilson", "wing", "wozniak", "wright", "yalow", "zuse",
    ]

    /// A fresh name for which `taken` is false.
    static func fresh(taken: (String) throws -> Bool) rethrows -> String {
        var rng = SystemRandomNumberGenerator()
        for attempt in 0..<20 {
            var name = "\(adjectives.randomElement(using: &rng)!)_\(surnames.randomElement(using: &rng)!)"
            if attempt >= 5 { name += String(Int.random(in: 0..<10, using: &rng)) }
            if try !taken(name) { return name }
        }
        // Thousands of containers: the long form is as good as unique.
        return "\(adjectives.randomElement(using: &rng)!)_\(surnames.randomElement(using: &rng)!)_\(Int.random(in: 0..<1_000_000, using: &rng))"
    }
}
