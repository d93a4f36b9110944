package ai.punica.kv;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.kv.KvCacheManager.SequencePages;
import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

class KvCacheManagerTest {

    @Test
    void sequencesGrowPageByPageAndNeverShareAPage() {
        KvCacheManager kv = new KvCacheManager(10, 4);
        SequencePages a = new SequencePages();
        SequencePages b = new SequencePages();
        assertThat(kv.grow(a, 5)).isTrue(); // 5 tokens: 2 pages
        assertThat(a.pageCount()).isEqualTo(2);
        assertThat(kv.grow(a, 8)).isTrue(); // still 2 pages
        assertThat(a.pageCount()).isEqualTo(2);
        assertThat(kv.grow(b, 9)).isTrue(); // 3 pages
        assertThat(kv.freePages()).isEqualTo(5);
        Set<Integer> seen = new HashSet<>();
        for (SequencePages s : new SequencePages[] {a, b}) {
            for (int i = 0; i < s.pageCount(); i++) {
                assertThat(seen.add(s.page(i))).as("page %d handed out twice", s.page(i)).isTrue();
            }
        }
    }

    @Test
    void growFailsWithoutSideEffectsWhenThePoolIsShort() {
        KvCacheManager kv = new KvCacheManager(3, 2);
        SequencePages a = new SequencePages();
        assertThat(kv.grow(a, 4)).isTrue();
        SequencePages b = new SequencePages();
        assertThat(kv.grow(b, 5)).isFalse();
        assertThat(b.pageCount()).isZero();
        assertThat(kv.freePages()).isEqualTo(1);
        assertThat(kv.canGrow(b, 2)).isTrue();
    }

    @Test
    void releaseReturnsEveryPage() {
        KvCacheManager kv = new KvCacheManager(8, 16);
        SequencePages a = new SequencePages();
        kv.grow(a, 100);
        assertThat(kv.usage()).isEqualTo(7.0 / 8);
        kv.release(a);
        assertThat(kv.freePages()).isEqualTo(8);
        assertThat(a.pageCount()).isZero();
        assertThat(kv.grow(a, 128)).isTrue();
    }

    @Test
    void pageCountFollowsTheMemoryBudget() {
        // 2 (k,v) · 4 layers · 2 heads · 32 dims · 4 bytes · 16 tokens = 32 KiB a page
        assertThat(KvCacheManager.pagesForBudget(1 << 20, 16, 4, 2, 32, 4)).isEqualTo(32);
        assertThatThrownBy(() -> KvCacheManager.pagesForBudget(1000, 16, 4, 2, 32, 4))
                .hasMessageContaining("holds no page");
    }
}
