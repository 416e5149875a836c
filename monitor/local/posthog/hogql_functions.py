"""PostHog's public HogQL function names, as read from PostHog's source: the local server's allowlist.

A name outside these lists is rejected by PostHog's printer with "Unsupported function call 'x(...)'",
and so it is here: a query that passes locally but that real PostHog rejects is a defect of the stand-in.

Where the lists were read (repository PostHog/posthog):
- OLD_RELEASE: posthog/hogql/functions/mapping.py at commit 00a2cdc6684dfba8d048a3601e2063fe0bf4bc3a, when
  every function lived in that one file (HOGQL_CLICKHOUSE_FUNCTIONS and HOGQL_AGGREGATIONS; names with a
  leading "_" are internal, see ALL_EXPOSED_FUNCTION_NAMES there). Self-hosted installs of that era are the
  oldest the monitor claims to support.
- NEWER_ONLY: names public in current releases but absent from that mapping, read from
  posthog/hogql/functions/clickhouse/conversions.py (commits 039a7875fe16 and a later one that added
  toFloat64OrNull/toFloatOrNull as aliases of toFloat, both printed as accurateCastOrNull). Only the
  conversion family was re-read name by name for current releases; other families (arrays, strings,
  datetime, aggregations...) are taken as the old list, which current releases still accept.

The monitor must use only OLD_RELEASE names (tests/integration/test_localposthog.py checks every query in
monitor/posthog/queries.py against the old release).
"""

from __future__ import annotations

from typing import Literal

Release = Literal["old", "current"]

# posthog/hogql/functions/mapping.py @ 00a2cdc: HOGQL_CLICKHOUSE_FUNCTIONS (public names) + HOGQL_AGGREGATIONS.
OLD_RELEASE = frozenset("""
plus minus multiply divide intDiv intDivOrZero modulo moduloOrZero positiveModulo negate abs gcd lcm max2 min2
multiplyDecimal divideDecimal
empty notEmpty length reverse
array range arrayConcat arrayElement has hasAll hasAny hasSubstr indexOf arrayCount countEqual arrayEnumerate
arrayEnumerateUniq arrayPopBack arrayPopFront arrayPushBack arrayPushFront arrayResize arraySlice arraySort
arrayReverseSort arrayUniq arrayJoin arrayDifference arrayDistinct arrayEnumerateDense arrayIntersect
arrayReverse arrayFilter arrayFlatten arrayCompact arrayZip arrayAUC arrayMap arrayFill arraySplit
arrayReverseFill arrayReverseSplit arrayExists arrayAll arrayFirst arrayLast arrayFirstIndex arrayLastIndex
arrayMin arrayMax arraySum arrayAvg arrayCumSum arrayCumSumNonNegative arrayProduct
equals notEquals less greater lessOrEquals greaterOrEquals
and or xor not
toInt toFloat toDecimal toDate toDateTime toUUID toString toJSONString parseDateTime parseDateTimeBestEffort
toTimeZone timeZoneOf timeZoneOffset toYear toQuarter toMonth toDayOfYear toDayOfMonth toDayOfWeek toHour
toMinute toSecond toUnixTimestamp toUnixTimestamp64Milli toStartOfYear toStartOfISOYear toStartOfQuarter
toStartOfMonth toLastDayOfMonth toMonday toStartOfWeek toStartOfDay toLastDayOfWeek toStartOfHour
toStartOfMinute toStartOfSecond toStartOfFiveMinutes toStartOfTenMinutes toStartOfFifteenMinutes toTime
toISOYear toISOWeek toWeek toYearWeek age dateDiff dateTrunc dateAdd dateSub timeStampAdd timeStampSub now
NOW nowInBlock today yesterday timeSlot toYYYYMM toYYYYMMDD toYYYYMMDDhhmmss addYears addMonths addWeeks
addDays addHours addMinutes addSeconds addQuarters subtractYears subtractMonths subtractWeeks subtractDays
subtractHours subtractMinutes subtractSeconds subtractQuarters timeSlots formatDateTime dateName monthName
fromUnixTimestamp toModifiedJulianDay fromModifiedJulianDay toIntervalSecond toIntervalMinute toIntervalHour
toIntervalDay toIntervalWeek toIntervalMonth toIntervalQuarter toIntervalYear
lengthUTF8 leftPad rightPad leftPadUTF8 rightPadUTF8 lower upper lowerUTF8 upperUTF8 isValidUTF8 toValidUTF8
repeat format reverseUTF8 concat substring substringUTF8 appendTrailingCharIfAbsent convertCharset
base58Encode base58Decode tryBase58Decode base64Encode base64Decode tryBase64Decode endsWith startsWith trim
trimLeft trimRight encodeXMLComponent decodeXMLComponent extractTextFromHTML ascii concatWithSeparator
position positionCaseInsensitive positionUTF8 positionCaseInsensitiveUTF8 multiSearchAllPositions
multiSearchAllPositionsUTF8 multiSearchFirstPosition multiSearchFirstIndex multiSearchAny match multiMatchAny
multiMatchAnyIndex multiMatchAllIndices multiFuzzyMatchAny multiFuzzyMatchAnyIndex multiFuzzyMatchAllIndices
extract extractAll extractAllGroupsHorizontal extractAllGroupsVertical like ilike notLike notILike
ngramDistance ngramSearch countSubstrings countSubstringsCaseInsensitive countSubstringsCaseInsensitiveUTF8
countMatches regexpExtract
replace replaceAll replaceOne replaceRegexpAll replaceRegexpOne regexpQuoteMeta translate translateUTF8
if multiIf
e pi exp log ln exp2 log2 exp10 log10 sqrt cbrt erf erfc lgamma tgamma sin cos tan asin acos atan pow power
intExp2 intExp10 cosh acosh sinh asinh atanh atan2 hypot log1p sign degrees radians factorial width_bucket
floor ceil trunc round roundBankers roundToExp2 roundDuration roundAge roundDown
map mapFromArrays mapAdd mapSubtract mapPopulateSeries mapContains mapKeys mapValues mapContainsKeyLike
mapExtractKeyLike mapApply mapFilter mapUpdate
splitByChar splitByString splitByRegexp splitByWhitespace splitByNonAlpha arrayStringConcat alphaTokens
extractAllGroups ngrams tokens
bitAnd bitOr bitXor bitNot bitShiftLeft bitShiftRight bitRotateLeft bitRotateRight bitSlice bitTest
bitTestAll bitTestAny bitCount bitHammingDistance
bitmapBuild bitmapToArray bitmapSubsetInRange bitmapSubsetLimit subBitmap bitmapContains bitmapHasAny
bitmapHasAll bitmapCardinality bitmapMin bitmapMax bitmapTransform bitmapAnd bitmapOr bitmapXor bitmapAndnot
bitmapAndCardinality bitmapOrCardinality bitmapXorCardinality bitmapAndnotCardinality
protocol domain domainWithoutWWW topLevelDomain firstSignificantSubdomain cutToFirstSignificantSubdomain
cutToFirstSignificantSubdomainWithWWW port path pathFull queryString fragment queryStringAndFragment
extractURLParameter extractURLParameters extractURLParameterNames URLHierarchy URLPathHierarchy
encodeURLComponent decodeURLComponent encodeURLFormComponent decodeURLFormComponent netloc cutWWW
cutQueryString cutFragment cutQueryStringAndFragment cutURLParameter
isValidJSON JSONHas JSONLength JSONArrayLength JSONType JSONExtractUInt JSONExtractInt JSONExtractFloat
JSONExtractBool JSONExtractString JSONExtractKey JSONExtractKeys JSONExtractRaw JSONExtractArrayRaw
JSONExtractKeysAndValuesRaw
in notIn
greatCircleDistance geoDistance greatCircleAngle pointInEllipses pointInPolygon geohashEncode geohashDecode
geohashesInBox
isNull isNotNull coalesce ifNull nullIf assumeNotNull toNullable
tuple tupleElement untuple tupleHammingDistance tupleToNameValuePairs tuplePlus tupleMinus tupleMultiply
tupleDivide tupleNegate tupleMultiplyByNumber tupleDivideByNumber dotProduct
isFinite isInfinite ifNotFinite isNaN bar transform formatReadableDecimalSize formatReadableSize
formatReadableQuantity formatReadableTimeDelta least greatest
tumble hop tumbleStart tumbleEnd hopStart hopEnd
L1Norm L2Norm LinfNorm LpNorm L1Distance L2Distance LinfDistance LpDistance L1Normalize L2Normalize
LinfNormalize LpNormalize cosineDistance
rank dense_rank row_number first_value last_value nth_value lagInFrame leadInFrame
count COUNT countIf countDistinctIf min minIf max maxIf sum sumIf avg avgIf any anyIf stddevPop stddevPopIf
stddevSamp stddevSampIf varPop varPopIf varSamp varSampIf covarPop covarPopIf covarSamp covarSampIf anyHeavy
anyHeavyIf anyLast anyLastIf argMin argMinIf argMax argMaxIf argMinMerge avgWeighted avgWeightedIf groupArray
groupUniqArray groupArrayInsertAt groupArrayInsertAtIf groupArrayMovingAvg groupArrayMovingAvgIf
groupArrayMovingSum groupArrayMovingSumIf groupBitAnd groupBitAndIf groupBitOr groupBitOrIf groupBitXor
groupBitXorIf groupBitmap groupBitmapIf groupBitmapAnd groupBitmapAndIf groupBitmapOr groupBitmapOrIf
groupBitmapXor groupBitmapXorIf sumWithOverflow sumWithOverflowIf deltaSum deltaSumIf deltaSumTimestamp
deltaSumTimestampIf sumMap sumMapIf minMap minMapIf maxMap maxMapIf skewSamp skewSampIf skewPop skewPopIf
kurtSamp kurtSampIf kurtPop kurtPopIf uniq uniqIf uniqExact uniqExactIf uniqHLL12 uniqHLL12If uniqTheta
uniqThetaIf median medianIf medianExact medianExactIf medianExactLow medianExactLowIf medianExactHigh
medianExactHighIf medianExactWeighted medianExactWeightedIf medianTiming medianTimingIf medianTimingWeighted
medianTimingWeightedIf medianDeterministic medianDeterministicIf medianTDigest medianTDigestIf
medianTDigestWeighted medianTDigestWeightedIf medianBFloat16 medianBFloat16If quantile quantileIf quantiles
quantilesIf simpleLinearRegression simpleLinearRegressionIf contingency contingencyIf cramersV cramersVIf
cramersVBiasCorrected cramersVBiasCorrectedIf theilsU theilsUIf maxIntersections maxIntersectionsIf
maxIntersectionsPosition maxIntersectionsPositionIf
""".split())

# posthog/hogql/functions/clickhouse/conversions.py, current releases: public there, absent from OLD_RELEASE.
NEWER_ONLY = frozenset("""
hex unhex reinterpretAsUInt8 reinterpretAsUInt16 reinterpretAsUInt32 reinterpretAsUInt64 reinterpretAsUInt128
reinterpretAsUInt256 reinterpretAsInt8 reinterpretAsInt16 reinterpretAsInt32 reinterpretAsInt64
reinterpretAsInt128 reinterpretAsInt256 reinterpretAsFloat32 reinterpretAsFloat64 reinterpretAsUUID
accurateCast accurateCastOrNull toIntOrZero toFloatOrNull toFloat64OrNull toFloatOrZero toFloatOrDefault
toUUIDOrDefault toNullableString toBool dynamicType defaultValueOfTypeName cityHash64 UUIDv7ToDateTime to_date
toDateTime64 toDateTimeUS isnull ifnull nullif
""".split())

# Names PostHog matches in any case (HogQLFunctionMeta(case_sensitive=False) in conversions.py; the old
# mapping listed COUNT beside count).
CASE_INSENSITIVE = frozenset({"count", "isnull", "coalesce", "ifnull", "nullif"})

# Argument counts that changed between releases, (old max, current max): the old mapping takes one argument
# where current releases take an optional timezone or format second argument.
MAX_ARGS: dict[str, tuple[int, int]] = {
    "parseDateTimeBestEffort": (1, 2),
    "toDateTime": (1, 2),
    "toString": (1, 2),
}

# Functions PostHog appends the project's timezone to when the caller gave none (HogQLFunctionMeta
# tz_aware=True in mapping.py and conversions.py): the reason datetime text is read in project time.
TZ_AWARE = frozenset({"parseDateTimeBestEffort", "toDateTime", "parseDateTime", "now", "NOW", "toDateTime64",
                      "toDateTimeUS", "UUIDv7ToDateTime"})


def public_names(release: Release) -> frozenset[str]:
    return OLD_RELEASE if release == "old" else OLD_RELEASE | NEWER_ONLY


def is_public(name: str, release: Release) -> bool:
    names = public_names(release)
    if name in names:
        return True
    low = name.lower()
    return low in CASE_INSENSITIVE and (release == "current" or low in ("count",))
