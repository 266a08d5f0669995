-- 0005: IDNA host names for subscriptions, and events.seq for `walhook replay`.
--
-- Non-ASCII host names are normalised (IDNA, README), in the database
-- so the rule holds for every writer, with or without walhook running.
--
-- A subscription URL whose host has non-ASCII characters is rewritten before the
-- URL rules run: the host is mapped like UTS #46 does for URLs (NFKC, lower
-- case, ideographic full stops as dots) and each non-ASCII label becomes
-- `xn--` + its RFC 3492 punycode. What IDNA refuses is refused with the rule
-- name `host`: forbidden host code points, controls, private-use and
-- non-characters, U+FFFD.

-- RFC 3492 punycode of one label (the encoder of section 6.3, its parameters
-- from section 5). Code points come from ascii(), which is the code point in a
-- UTF-8 database.
CREATE FUNCTION walhook.punycode_encode(label text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    base  CONSTANT int := 36;
    tmin  CONSTANT int := 1;
    tmax  CONSTANT int := 26;
    skew  CONSTANT int := 38;
    damp  CONSTANT int := 700;
    cps   int[] := '{}';
    len   int := length(label);
    n     int := 128;
    delta bigint := 0;
    bias  int := 72;
    h     int;
    b     int;
    m     int;
    q     bigint;
    k     int;
    t     int;
    d     int;
    c     int;
    out   text := '';
BEGIN
    FOR i IN 1 .. len LOOP
        cps := cps || ascii(substr(label, i, 1));
    END LOOP;
    FOREACH c IN ARRAY cps LOOP
        IF c < 128 THEN
            out := out || chr(c);
        END IF;
    END LOOP;
    b := length(out);
    h := b;
    IF b > 0 THEN
        out := out || '-';
    END IF;
    WHILE h < len LOOP
        SELECT min(x) INTO m FROM unnest(cps) x WHERE x >= n;
        delta := delta + (m - n)::bigint * (h + 1);
        n := m;
        FOREACH c IN ARRAY cps LOOP
            IF c < n THEN
                delta := delta + 1;
            ELSIF c = n THEN
                q := delta;
                k := base;
                LOOP
                    t := CASE WHEN k <= bias THEN tmin WHEN k >= bias + tmax THEN tmax ELSE k - bias END;
                    EXIT WHEN q < t;
                    d := t + ((q - t) % (base - t))::int;
                    out := out || chr(CASE WHEN d < 26 THEN 97 + d ELSE 22 + d END);
                    q := (q - t) / (base - t);
                    k := k + base;
                END LOOP;
                out := out || chr(CASE WHEN q < 26 THEN 97 + q::int ELSE 22 + q::int END);
                -- adapt(delta, h + 1, h = b)
                delta := CASE WHEN h = b THEN delta / damp ELSE delta / 2 END;
                delta := delta + delta / (h + 1);
                k := 0;
                WHILE delta > ((base - tmin) * tmax) / 2 LOOP
                    delta := delta / (base - tmin);
                    k := k + base;
                END LOOP;
                bias := k + ((base - tmin + 1) * delta) / (delta + skew);
                delta := 0;
                h := h + 1;
            END IF;
        END LOOP;
        delta := delta + 1;
        n := n + 1;
    END LOOP;
    RETURN out;
END
$$;

-- Lower case by Unicode rules: an ICU collation when the server has one (the
-- database's own collation may be "C", which lowers ASCII only).
CREATE FUNCTION walhook.unicode_lower(s text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    RETURN lower(s COLLATE "und-x-icu");
EXCEPTION WHEN undefined_object OR feature_not_supported THEN
    RETURN lower(s);
END
$$;

-- The host in its IDNA (ASCII) form; an ASCII host is returned unchanged.
CREATE FUNCTION walhook.idna_host(host text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    mapped text;
    label text;
    labels text[] := '{}';
BEGIN
    IF host !~ '[^\x01-\x7f]' THEN
        RETURN host;
    END IF;
    mapped := walhook.unicode_lower(normalize(host, NFKC));
    mapped := translate(mapped, U&'\3002\FF0E\FF61', '...');
    IF mapped ~ '[\x01-\x20#%/:<>?@\[\\\]^|\x7f-\x9f]' THEN
        RAISE EXCEPTION 'url rule host: host % contains a character IDNA does not allow in a host name (space, control or one of #%%/:<>?@[\]^|)', host;
    END IF;
    IF mapped ~ U&'[\E000-\F8FF\FDD0-\FDEF\FFFD\FFFE\FFFF]' OR mapped ~ U&'[\+0F0000-\+10FFFF]' THEN
        RAISE EXCEPTION 'url rule host: host % contains a code point IDNA disallows (private use, non-character or U+FFFD)', host;
    END IF;
    FOREACH label IN ARRAY string_to_array(mapped, '.') LOOP
        IF label ~ '[^\x01-\x7f]' THEN
            label := 'xn--' || walhook.punycode_encode(label);
        END IF;
        labels := labels || label;
    END LOOP;
    RETURN array_to_string(labels, '.');
END
$$;

-- The URL with its host in IDNA form; anything else is left to check_url.
CREATE FUNCTION walhook.idna_url(url text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    m text[];
    host text;
    port text;
BEGIN
    m := regexp_match(url, '^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)(.*)$');
    IF m IS NULL OR position('@' IN m[2]) > 0 OR m[2] !~ '[^\x01-\x7f]' THEN
        RETURN url;
    END IF;
    host := regexp_replace(m[2], ':[0-9]*$', '');
    port := substr(m[2], length(host) + 1);
    RETURN m[1] || walhook.idna_host(host) || port || m[3];
END
$$;

CREATE FUNCTION walhook.subscriptions_idna() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.url := walhook.idna_url(NEW.url);
    RETURN NEW;
END
$$;
-- Named to sort before subscriptions_check (triggers fire in name order), so the
-- URL rules see the normalised URL.
CREATE TRIGGER subscriptions_0_idna BEFORE INSERT OR UPDATE ON walhook.subscriptions
    FOR EACH ROW EXECUTE FUNCTION walhook.subscriptions_idna();

-- The position of an event's change in its transaction, so that deliveries
-- created later (`walhook replay`) keep commit order for ordered
-- subscriptions. NULL for events stored before this column (replay then takes
-- it from the event's other deliveries).
ALTER TABLE walhook.events ADD COLUMN seq integer;
