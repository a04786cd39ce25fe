"""Build words.jsonl: common concrete nouns with English, French, German, Spanish and Chinese translations.

The table below is hand-written (one common, everyday translation per language; German nouns
capitalised, French/Spanish without articles, Chinese in simplified characters) and checked by
hand. Run: python data/translation/make_words.py  (deterministic; rewrites words.jsonl)
"""

import json
from pathlib import Path

# english, français, deutsch, español, 中文
WORDS = """
flower fleur Blume flor 花
cat chat Katze gato 猫
dog chien Hund perro 狗
book livre Buch libro 书
water eau Wasser agua 水
house maison Haus casa 房子
tree arbre Baum árbol 树
sun soleil Sonne sol 太阳
moon lune Mond luna 月亮
star étoile Stern estrella 星星
bird oiseau Vogel pájaro 鸟
fish poisson Fisch pez 鱼
horse cheval Pferd caballo 马
cow vache Kuh vaca 牛
apple pomme Apfel manzana 苹果
bread pain Brot pan 面包
milk lait Milch leche 牛奶
cheese fromage Käse queso 奶酪
egg œuf Ei huevo 鸡蛋
wine vin Wein vino 葡萄酒
door porte Tür puerta 门
window fenêtre Fenster ventana 窗户
table table Tisch mesa 桌子
chair chaise Stuhl silla 椅子
bed lit Bett cama 床
car voiture Auto coche 汽车
train train Zug tren 火车
boat bateau Boot barco 船
street rue Straße calle 街道
city ville Stadt ciudad 城市
village village Dorf pueblo 村庄
mountain montagne Berg montaña 山
river rivière Fluss río 河
sea mer Meer mar 海
lake lac See lago 湖
forest forêt Wald bosque 森林
garden jardin Garten jardín 花园
snow neige Schnee nieve 雪
rain pluie Regen lluvia 雨
wind vent Wind viento 风
fire feu Feuer fuego 火
stone pierre Stein piedra 石头
gold or Gold oro 黄金
sky ciel Himmel cielo 天空
cloud nuage Wolke nube 云
night nuit Nacht noche 夜晚
morning matin Morgen mañana 早上
year année Jahr año 年
week semaine Woche semana 星期
hour heure Stunde hora 小时
head tête Kopf cabeza 头
hand main Hand mano 手
foot pied Fuß pie 脚
eye œil Auge ojo 眼睛
ear oreille Ohr oreja 耳朵
mouth bouche Mund boca 嘴
nose nez Nase nariz 鼻子
heart cœur Herz corazón 心
blood sang Blut sangre 血
hair cheveux Haar pelo 头发
tooth dent Zahn diente 牙齿
man homme Mann hombre 男人
woman femme Frau mujer 女人
child enfant Kind niño 孩子
mother mère Mutter madre 母亲
father père Vater padre 父亲
brother frère Bruder hermano 兄弟
sister sœur Schwester hermana 姐妹
friend ami Freund amigo 朋友
teacher professeur Lehrer profesor 老师
doctor médecin Arzt médico 医生
king roi König rey 国王
queen reine Königin reina 女王
school école Schule escuela 学校
church église Kirche iglesia 教堂
hospital hôpital Krankenhaus hospital 医院
bridge pont Brücke puente 桥
key clé Schlüssel llave 钥匙
money argent Geld dinero 钱
word mot Wort palabra 单词
language langue Sprache idioma 语言
song chanson Lied canción 歌曲
music musique Musik música 音乐
game jeu Spiel juego 游戏
ball balle Ball pelota 球
paper papier Papier papel 纸
letter lettre Brief carta 信
clock horloge Uhr reloj 钟
cup tasse Tasse taza 杯子
knife couteau Messer cuchillo 刀
spoon cuillère Löffel cuchara 勺子
shoe chaussure Schuh zapato 鞋
hat chapeau Hut sombrero 帽子
shirt chemise Hemd camisa 衬衫
bag sac Tasche bolsa 包
box boîte Kiste caja 盒子
bottle bouteille Flasche botella 瓶子
wall mur Wand pared 墙
roof toit Dach techo 屋顶
kitchen cuisine Küche cocina 厨房
island île Insel isla 岛
beach plage Strand playa 海滩
desert désert Wüste desierto 沙漠
farm ferme Bauernhof granja 农场
mouse souris Maus ratón 老鼠
pig cochon Schwein cerdo 猪
sheep mouton Schaf oveja 羊
chicken poulet Huhn pollo 鸡
bear ours Bär oso 熊
wolf loup Wolf lobo 狼
lion lion Löwe león 狮子
snake serpent Schlange serpiente 蛇
frog grenouille Frosch rana 青蛙
bee abeille Biene abeja 蜜蜂
butterfly papillon Schmetterling mariposa 蝴蝶
rabbit lapin Kaninchen conejo 兔子
monkey singe Affe mono 猴子
elephant éléphant Elefant elefante 大象
rice riz Reis arroz 米饭
salt sel Salz sal 盐
sugar sucre Zucker azúcar 糖
meat viande Fleisch carne 肉
soup soupe Suppe sopa 汤
cake gâteau Kuchen pastel 蛋糕
tea thé Tee té 茶
coffee café Kaffee café 咖啡
lemon citron Zitrone limón 柠檬
grape raisin Traube uva 葡萄
banana banane Banane plátano 香蕉
leaf feuille Blatt hoja 叶子
grass herbe Gras hierba 草
telephone téléphone Telefon teléfono 电话
computer ordinateur Computer ordenador 电脑
pen stylo Stift bolígrafo 笔
ice glace Eis hielo 冰
war guerre Krieg guerra 战争
peace paix Frieden paz 和平
love amour Liebe amor 爱
dream rêve Traum sueño 梦
death mort Tod muerte 死亡
life vie Leben vida 生命
food nourriture Essen comida 食物
market marché Markt mercado 市场
airport aéroport Flughafen aeropuerto 机场
airplane avion Flugzeug avión 飞机
bicycle vélo Fahrrad bicicleta 自行车
shadow ombre Schatten sombra 影子
summer été Sommer verano 夏天
winter hiver Winter invierno 冬天
"""

LANGS = ["en", "fr", "de", "es", "zh"]


def rows() -> list[dict]:
    """One dict per noun: {'en': ..., 'fr': ..., 'de': ..., 'es': ..., 'zh': ...}."""
    out = [dict(zip(LANGS, line.split(), strict=True)) for line in WORDS.strip().splitlines()]
    assert len({r["en"] for r in out}) == len(out), "duplicate English word"
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("words.jsonl")
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows()))
    print(f"wrote {len(rows())} nouns to {path}")
